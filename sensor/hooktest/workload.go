package hooktest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The benchmarks' workloads: the same benign (and, for chmod, drifting)
// syscall loops whichever backend is measured. A workload runs in a child
// (this test binary re-executed inside the measured cgroup) so that it is in
// scope and the measuring process is not.

const (
	workloadEnv = "DRIFT_WORKLOAD"
	nEnv        = "DRIFT_WORKLOAD_N"
	dirEnv      = "DRIFT_WORKLOAD_DIR"
	fileEnv     = "DRIFT_WORKLOAD_FILE"
)

// IsWorkload reports whether this process is a workload child; TestMain
// calls WorkloadMain then.
func IsWorkload() bool { return os.Getenv(workloadEnv) != "" }

// WorkloadMain runs the workload the environment names, prints the
// nanoseconds it took and returns the exit status.
func WorkloadMain() int {
	n, _ := strconv.Atoi(os.Getenv(nEnv))
	ns, err := Workload(os.Getenv(workloadEnv), n, os.Getenv(dirEnv), os.Getenv(fileEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ns.Nanoseconds())
	return 0
}

// RunWorkload runs kind n times in a child inside cg and returns the time per
// iteration. dir is where churn-like workloads make their files; file is the
// one file read (syscalls) or changed (chmod).
func RunWorkload(cg *testenv.Cgroup, kind string, n int, dir, file string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd, closeFD, err := cg.Command(self)
	if err != nil {
		return 0, err
	}
	defer closeFD()
	cmd.Env = append(os.Environ(), workloadEnv+"="+kind, nEnv+"="+strconv.Itoa(n), dirEnv+"="+dir, fileEnv+"="+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("workload %s: %v: %s", kind, err, out)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("workload %s printed %q", kind, out)
	}
	return time.Duration(ns / int64(n)), nil
}

// Workload runs one loop n times and returns how long it took; any failed
// syscall stops it with an error, so a benchmark never times work not done:
//   - churn: create, write, rename, unlink in dir;
//   - syscalls: open for reading, fstat, stat, close of file;
//   - opens: open an existing file in dir for writing, close;
//   - writes: writes through one descriptor to a file in dir;
//   - renames: a file in dir renamed back and forth;
//   - chmod: file's mode flipped (a finding per call on a sealed scope);
//   - mmap: file (a library) opened, mapped executable and unmapped, as the
//     dynamic loader and dlopen do.
func Workload(kind string, n int, dir, file string) (time.Duration, error) {
	buf := []byte("some benign bytes\n")
	start := time.Now()
	switch kind {
	case "churn":
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		for i := 0; i < n; i++ {
			fd, err := unix.Open(a, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o644)
			if err != nil {
				return 0, err
			}
			if err := writeAll(fd, buf); err != nil {
				return 0, err
			}
			if err := unix.Close(fd); err != nil {
				return 0, err
			}
			if err := unix.Rename(a, b); err != nil {
				return 0, err
			}
			if err := unix.Unlink(b); err != nil {
				return 0, err
			}
		}
	case "syscalls":
		var st unix.Stat_t
		for i := 0; i < n; i++ {
			fd, err := unix.Open(file, unix.O_RDONLY, 0)
			if err != nil {
				return 0, err
			}
			if err := unix.Fstat(fd, &st); err != nil {
				return 0, err
			}
			if err := unix.Stat(file, &st); err != nil {
				return 0, err
			}
			if err := unix.Close(fd); err != nil {
				return 0, err
			}
		}
	case "opens":
		f := filepath.Join(dir, "o")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return 0, err
		}
		for i := 0; i < n; i++ {
			fd, err := unix.Open(f, unix.O_WRONLY, 0)
			if err != nil {
				return 0, err
			}
			if err := unix.Close(fd); err != nil {
				return 0, err
			}
		}
	case "writes":
		fd, err := unix.Open(filepath.Join(dir, "w"), unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o644)
		if err != nil {
			return 0, err
		}
		for i := 0; i < n; i++ {
			if w, err := unix.Pwrite(fd, buf, 0); err != nil || w != len(buf) {
				return 0, fmt.Errorf("pwrite: %d of %d bytes: %v", w, len(buf), err)
			}
		}
		if err := unix.Close(fd); err != nil {
			return 0, err
		}
	case "renames":
		a, b := filepath.Join(dir, "ra"), filepath.Join(dir, "rb")
		if err := os.WriteFile(a, nil, 0o644); err != nil {
			return 0, err
		}
		for i := 0; i < n; i++ {
			from, to := a, b
			if i%2 == 1 {
				from, to = b, a
			}
			if err := unix.Rename(from, to); err != nil {
				return 0, err
			}
		}
	case "chmod":
		for i := 0; i < n; i++ {
			if err := unix.Chmod(file, uint32(0o600+i%2)); err != nil {
				return 0, err
			}
		}
	case "mmap":
		for i := 0; i < n; i++ {
			if err := mapExec(file); err != nil {
				return 0, err
			}
		}
	default:
		return 0, fmt.Errorf("unknown workload %q", kind)
	}
	return time.Since(start), nil
}

// writeAll writes buf to fd, failing on an error or a short write.
func writeAll(fd int, buf []byte) error {
	w, err := unix.Write(fd, buf)
	if err == nil && w != len(buf) {
		err = fmt.Errorf("short write: %d of %d bytes", w, len(buf))
	}
	return err
}

// mapExec maps file readable and executable as the dynamic loader maps a
// library (open, fstat, mmap of the whole file, close), then unmaps it.
func mapExec(file string) error {
	fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	var m []byte
	if err == nil {
		m, err = unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("map %s executable: %w", file, err)
	}
	return unix.Munmap(m)
}
