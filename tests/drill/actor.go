package drill

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
)

// actorEnv carries an actorJob to a binary re-executed as the actor inside
// a test host.
const actorEnv = "DRIFT_DRILL_ACTOR"

// The actor's clock goes to the drill through a shared page, the actor's
// descriptor 3: a store into it is no syscall, so nothing comes between the
// clock and the timed call, and the drill reads it even when the response
// killed the actor right after its call.
const (
	clockFD   = 3
	clockSize = 4096
	offT0     = 0 // CLOCK_MONOTONIC just before the timed call
	offErrno  = 8 // the call's errno + 1, once it returned
)

// actorJob is what one actor process does.
type actorJob struct {
	Pre  [][]string `json:"pre,omitempty"`
	Act  []string   `json:"act"`
	Wait bool       `json:"wait,omitempty"` // read a line from stdin before the timed action
	// Cgroup is the host's cgroup, which the actor joins itself once it is
	// in a mount namespace of its own: making that namespace's mounts
	// private is a mount, which must not happen in the sealed scope.
	Cgroup string `json:"cgroup"`
}

// Operations the drill adds to the hook tests' actor (act.Do), which
// runs every other name.
var ownOps = []string{"append", "sed-i", "setuid", "setcap", "bind-udp", "listen6"}

// ops are the operation names the catalog may use.
var ops = append(slices.Clone(ownOps), "create", "read", "write-elf", "rename", "unlink", "truncate", "mkdir",
	"link", "symlink", "chown", "utimes", "chattr", "mount", "exec", "memfd", "exec-deleted", "finit-module",
	"init-module", "kexec-load", "bpf-load", "listen", "uring-open", "uring-mkdir")

func knownOp(op string) bool { return slices.Contains(ops, op) }

// ActorMainIfChild turns a binary started by the drill as an actor into the
// actor and exits; in any other process it returns at once. Call it first
// thing in main or TestMain of a binary that runs drills.
func ActorMainIfChild() {
	raw := os.Getenv(actorEnv)
	if raw == "" {
		return
	}
	os.Exit(actorMain(raw))
}

// actorMain joins the host's cgroup, runs the job's pre steps (each must
// work), then stores CLOCK_MONOTONIC in the shared page and makes the timed
// call at once. Exit 2 means a step that must work failed.
func actorMain(raw string) int {
	var job actorJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		fmt.Printf("drill actor: bad job %q: %v\n", raw, err)
		return 2
	}
	runtime.LockOSThread()
	page, err := unix.Mmap(clockFD, 0, clockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fmt.Printf("drill actor: map the clock page: %v\n", err)
		return 2
	}
	if err := os.WriteFile(filepath.Join(job.Cgroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Printf("drill actor: join the host's cgroup: %v\n", err)
		return 2
	}
	for _, p := range job.Pre {
		if err := do(p[0], p[1:]); err != nil {
			fmt.Printf("drill actor: pre step %q: %v\n", p, err)
			return 2
		}
	}
	if job.Wait {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 2 // the drill went away
		}
	}
	op, args := job.Act[0], job.Act[1:]
	t0 := (*int64)(unsafe.Pointer(&page[offT0]))
	atomic.StoreInt64(t0, int64(event.KTimeNow()))
	err = do(op, args)
	var en syscall.Errno
	if err != nil && !errors.As(err, &en) {
		fmt.Printf("drill actor: %s %q: %v\n", op, args, err)
		return 2
	}
	atomic.StoreInt64((*int64)(unsafe.Pointer(&page[offErrno])), int64(en)+1)
	return 0
}

// do runs one operation; a syscall's refusal comes back as a syscall.Errno.
func do(op string, a []string) error {
	arg := func(i int) string {
		if i < len(a) {
			return a[i]
		}
		return ""
	}
	switch op {
	case "append":
		fd, err := unix.Open(arg(0), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte("drill\n"))
		return err
	case "sed-i": // what sed -i does: a temporary file beside the original, renamed over it
		old, err := os.ReadFile(arg(0))
		if err != nil {
			return fmt.Errorf("read %s: %v", arg(0), err)
		}
		tmp := filepath.Join(filepath.Dir(arg(0)), "sedDRILL")
		fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		_, err = unix.Write(fd, append(old, "# drill\n"...))
		unix.Close(fd)
		if err != nil {
			return err
		}
		return unix.Rename(tmp, arg(0))
	case "setuid":
		return unix.Chmod(arg(0), 0o4755)
	case "setcap": // setcap cap_net_raw+ep: a version 2 security.capability
		v := make([]byte, 20)
		binary.LittleEndian.PutUint32(v[0:], 0x02000000|1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
		binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_RAW)
		return unix.Setxattr(arg(0), "security.capability", v, 0)
	case "bind-udp":
		return bindOn(unix.AF_INET, unix.SOCK_DGRAM, &unix.SockaddrInet4{Port: atoi(arg(0))}, false)
	case "listen6":
		return bindOn(unix.AF_INET6, unix.SOCK_STREAM, &unix.SockaddrInet6{Port: atoi(arg(0))}, true)
	}
	return act.Do(op, a...)
}

// bindOn binds a new socket (and listens on it); the socket stays open until
// the actor exits.
func bindOn(family, typ int, sa unix.Sockaddr, listen bool) error {
	s, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %v", err)
	}
	if err := unix.Bind(s, sa); err != nil || !listen {
		return err
	}
	return unix.Listen(s, 1)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("drill actor: %q is not a number", s))
	}
	return n
}
