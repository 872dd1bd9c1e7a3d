package lsm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"golang.org/x/sys/unix"
)

// BenchmarkLSM measures benign file churn on a sealed host (create, write
// 4 KiB, close, unlink in a writable exception) with no sensor, and with the
// lsm backend in detect and in enforce mode. The benchmark process joins the
// scope cgroup and stops being "the sensor" for the kernel, so its own
// syscalls pay for the hooks. Compare ns/op: lsm target <= 2 % over none.
func BenchmarkLSM(b *testing.B) {
	requireLSM(b)
	cgRoot, err := sysfs.CgroupRoot()
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4096)
	churn := func(b *testing.B, dir string) {
		names := make([]string, 64)
		for i := range names {
			names[i] = filepath.Join(dir, "f"+strconv.Itoa(i))
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			name := names[i%len(names)]
			fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unix.Write(fd, data); err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
			if err := unix.Unlink(name); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("none", func(b *testing.B) { churn(b, b.TempDir()) })
	for _, mode := range []string{"detect", "enforce"} {
		b.Run(mode, func(b *testing.B) {
			fx := newFixture(b)
			fx.setEnforce(b, mode == "enforce")
			dir := filepath.Join(fx.base, "free", "churn")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			fx.b.cfg.SelfTgid = 0
			if err := fx.b.putConfig(); err != nil {
				b.Fatal(err)
			}
			join := func(cg string) {
				if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
					b.Fatalf("move the benchmark into cgroup %s: %v", cg, err)
				}
			}
			join(fx.cg.Path)
			defer join(cgRoot)
			churn(b, dir)
			b.StopTimer()
			fx.b.SetSealed(false)
			if st, err := fx.b.Stats(); err == nil && st.Lost > 0 {
				b.Errorf("%d records lost", st.Lost)
			}
		})
	}
}
