package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// A drill on a live host: the operator's signed marker (checked by the
// responder, never here: the host holds no key that could vouch for it)
// names the drill, and the sensor performs harmless versions of techniques
// in <DrillDir>/driftsensor-drill-<marker id>, from a process in its scope so
// the kernel sees them like any other drift.

// drillScript performs the techniques named by its arguments after the
// directory ($1) and the marker id ($2).
const drillScript = `set -e
dir=$1 id=$2
shift 2
for t in "$@"; do
  case $t in
    file) printf 'driftsensor drill %s\n' "$id" > "$dir/file" ;;
    exec) cp /bin/true "$dir/tool"; "$dir/tool" ;;
  esac
done
`

// drillTimeout bounds a drill's process.
const drillTimeout = 10 * time.Second

// Drill performs the techniques (comma-separated names) of the drill whose
// marker id is id.
func (d *Daemon) Drill(id, techniques string) (*event.DrillRun, error) {
	if d.cfg.DrillDir == "" {
		return nil, errors.New("drill: this sensor has no drill directory (start driftsensor with --drill-dir)")
	}
	names := strings.Split(techniques, ",")
	if err := event.CheckTechniques(names); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if fi, err := os.Stat(d.cfg.DrillDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("drill: drill directory %s is not a directory (create it before sealing): %v", d.cfg.DrillDir, err)
	}
	// The sensor makes the drill's directory itself: its own acts are not
	// findings, so the drill's first finding is its first technique.
	dir := filepath.Join(d.cfg.DrillDir, event.DrillDir(id))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w (one drill per marker)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drillTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", drillScript, "drill", dir, id}, names...)...)
	if d.cfg.DrillCgroup != "" {
		cg, err := os.Open(d.cfg.DrillCgroup)
		if err != nil {
			return nil, fmt.Errorf("drill: scope cgroup: %w", err)
		}
		defer cg.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	out, err := cmd.CombinedOutput()
	run := &event.DrillRun{Dir: dir, Techniques: names}
	if cmd.Process != nil {
		run.PID = cmd.Process.Pid
	}
	if err != nil {
		return run, fmt.Errorf("drill %s in %s: %v: %s", id, dir, err, strings.TrimSpace(string(out)))
	}
	d.cfg.Log.Warn().Str("drill", id).Str("dir", dir).Strs("techniques", names).Int("pid", run.PID).Msg("drill performed")
	return run, nil
}
