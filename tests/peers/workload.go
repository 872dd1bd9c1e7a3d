package peers

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The workloads of this benchmark that sensor/hooktest does not have. Each
// runs in a child (the test binary re-executed in the sealed cgroup, so that
// it is in scope and the measuring process is not), named by ChildEnv.

// ChildEnv names the workload a child runs; its arguments follow in os.Args.
const ChildEnv = "DRIFT_PEERS_CHILD"

// IsChild reports whether this process is a workload child.
func IsChild() bool { return os.Getenv(ChildEnv) != "" }

// ChildMain runs the child's workload and returns its exit status.
func ChildMain() int {
	var err error
	switch kind := os.Getenv(ChildEnv); kind {
	case "storm":
		err = storm(os.Args[1], atoi(os.Args[2]))
	case "latency":
		err = latency(os.Args[1], atoi(os.Args[2]), time.Duration(atoi(os.Args[3])))
	default:
		err = fmt.Errorf("unknown workload %q", kind)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// StormFile is the name of the storm's i-th file in dir.
func StormFile(dir string, i int) string { return filepath.Join(dir, "s"+strconv.Itoa(i)) }

// storm makes n mutations in dir: n/2 files created, each then chmodded.
// Any failed syscall stops it, so no run is timed for work not done.
func storm(dir string, n int) error {
	for i := 0; i < n/2; i++ {
		p := StormFile(dir, i)
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("storm: create %s: %v", p, err)
		}
		unix.Close(fd)
		if err := unix.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("storm: chmod %s: %v", p, err)
		}
	}
	return nil
}

// LatencyFile is the i-th file the latency workload changes.
func LatencyFile(dir string, i int) string { return filepath.Join(dir, "l"+strconv.Itoa(i)) }

// latency chmods the files LatencyFile(dir, 0..n-1) one every interval and
// prints, one a line, the CLOCK_MONOTONIC time taken just before each chmod.
func latency(dir string, n int, interval time.Duration) error {
	times := make([]int64, n)
	next := time.Now()
	for i := range n {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		times[i] = Now()
		if err := unix.Chmod(LatencyFile(dir, i), uint32(0o600+i%2*0o40)); err != nil {
			return fmt.Errorf("latency: chmod: %v", err)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for _, t := range times {
		fmt.Fprintln(w, t)
	}
	return w.Flush()
}

// ParseTimes reads what latency printed.
func ParseTimes(out string) ([]int64, error) {
	var ts []int64
	for _, l := range strings.Fields(out) {
		t, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("latency workload printed %q: %v", l, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}
