package bpftest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestVMAWalkAgreesWithFindVMA: in a process holding tens of thousands of
// mappings (a maple tree several levels deep), the lockless walk the
// tracepoint backend falls back on (bpf/vma.h vma_walk) finds, for every
// address probed, the very mapping bpf_find_vma finds under the mmap lock:
// the start, middle and last byte of anonymous and file mappings, and
// addresses in holes, where neither finds one.
func TestVMAWalkAgreesWithFindVMA(t *testing.T) {
	testenv.RequireBPF(t)
	p, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	page := os.Getpagesize()
	file := filepath.Join(t.TempDir(), "lib.so")
	if err := os.WriteFile(file, make([]byte, 2*page), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(file, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	// A reservation of 2n pages. Page 2i becomes, by i mod 4: anonymous
	// and readable; a private mapping of the file; two pages of the file
	// (taking page 2i+1 too); a hole. The other odd pages stay PROT_NONE
	// and anonymous: no two neighbours can merge, so each is a mapping.
	const n = 12000
	region, err := unix.Mmap(-1, 0, 2*n*page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	base := uintptr(unsafe.Pointer(&region[0]))
	defer unix.Munmap(region)
	at := func(i int) []byte { return region[i*page : (i+1)*page] }
	mapFile := func(i, pages int) {
		t.Helper()
		if _, _, e := unix.Syscall6(unix.SYS_MMAP, base+uintptr(i*page), uintptr(pages*page), unix.PROT_READ,
			unix.MAP_PRIVATE|unix.MAP_FIXED, uintptr(fd), 0); e != 0 {
			t.Fatalf("map the file at page %d: %v", i, e)
		}
	}
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			if err := unix.Mprotect(at(2*i), unix.PROT_READ); err != nil {
				t.Fatal(err)
			}
		case 1:
			mapFile(2*i, 1)
		case 2:
			mapFile(2*i, 2)
		case 3:
			// not unix.Munmap: it unmaps only whole mappings it made
			if _, _, e := unix.Syscall(unix.SYS_MUNMAP, base+uintptr(2*i*page), uintptr(page), 0); e != 0 {
				t.Fatalf("unmap page %d: %v", 2*i, e)
			}
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d mappings in the process", strings.Count(string(maps), "\n"))

	// busy counts the addresses bpf_find_vma never got the lock for, retried
	// counts its tries that found the lock taken: the Go runtime's threads
	// map memory, and under load a thread can hold the lock, or wait for it,
	// for long stretches (12 % of the probes in a tcg VM beside a busy host).
	busy, retried, files, holes := 0, 0, 0, 0
	for pg := 0; pg < 2*n; pg++ {
		i := pg / 2
		hole := pg%2 == 0 && i%4 == 3
		isFile := pg%2 == 0 && (i%4 == 1 || i%4 == 2) || pg%2 == 1 && i%4 == 2
		for _, off := range []int{0, page / 2, page - 1} {
			addr := base + uintptr(pg*page+off)
			m, err := p.VMA(addr)
			for try := 0; err == nil && m.FindErr == -int64(unix.EBUSY) && try < 1000; try++ {
				retried++
				runtime.Gosched()
				m, err = p.VMA(addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case m.FindErr == -int64(unix.EBUSY): // the lock stayed taken: nothing to compare
				busy++
				continue
			case hole && (m.FindErr != -int64(unix.ENOENT) || m.Find != 0):
				t.Fatalf("page %d+%d, a hole: bpf_find_vma returned %d, mapping %#x", pg, off, m.FindErr, m.Find)
			case !hole && (m.FindErr != 0 || m.Find == 0):
				t.Fatalf("page %d+%d: bpf_find_vma returned %d, mapping %#x", pg, off, m.FindErr, m.Find)
			}
			if m.Walk != m.Find {
				t.Errorf("page %d+%d: the walk found mapping %#x, bpf_find_vma %#x", pg, off, m.Walk, m.Find)
				continue
			}
			if hole {
				holes++
			}
			if isFile {
				files++
			}
			if (m.WalkFile != 0) != isFile {
				t.Errorf("page %d+%d: the walk's mapping has file %#x, want one: %v", pg, off, m.WalkFile, isFile)
			}
		}
	}
	probes := 3 * 2 * n
	t.Logf("%d addresses probed: %d in holes, %d in file mappings; the lock found taken %d times, %d addresses never compared", probes, holes, files, retried, busy)
	if busy > probes/100 {
		t.Errorf("bpf_find_vma could not take the lock for %d of %d addresses in 1,000 tries each: too few compared", busy, probes)
	}
}
