package lsm

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
)

// TestTamper: on the lsm backend, another process (outside the sealed scope)
// opening the sensor's own file, or turning the sensor's config map into a
// descriptor, is a tamper finding; in enforce mode it is also refused.
func TestTamper(t *testing.T) {
	requireLSM(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "host.creds")
	if err := os.WriteFile(creds, []byte("seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	bed := hooktest.NewBed(t, hooktest.BedConfig{Load: func(opts backend.Options) (backend.Backend, error) {
		opts.Protect = []string{creds}
		return Load(opts)
	}})
	bed.Seal(t, true)
	var cfgID uint32
	for _, o := range bed.Backend().(*Backend).SelfObjects() {
		if o.Kind == "map" && o.Name == "config_map" {
			cfgID = o.ID
		}
	}
	if cfgID == 0 {
		t.Fatal("config_map is not among the sensor's own objects")
	}
	for _, mode := range []hooktest.Mode{hooktest.Detect, hooktest.Enforce} {
		t.Run(string(mode), func(t *testing.T) {
			bed.Configure(t, hooktest.Config{Mode: mode, DenyBinds: true})
			deny := mode == hooktest.Enforce
			wantErrno := map[bool]syscall.Errno{false: 0, true: syscall.EPERM}[deny]

			res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"read", creds}})
			if res.Errno != wantErrno {
				t.Errorf("read of the sensor's file: errno %v, want %v", res.Errno, wantErrno)
			}
			by := fmt.Sprintf("by pid %d (%s)", res.PID, act.ActorComm())
			bed.Expect(t, hooktest.Want{Kind: event.KindSensor, Action: sensor.ActionTamper, Denied: deny,
				Detail: fmt.Sprintf("open of driftsensor file %s %s", creds, by)}, res.PID)

			// a zero struct config: unsealed, whole host, no reflex
			res = bed.Act(t, hooktest.Act{Outside: true, Args: []string{"bpf-map-update", fmt.Sprint(cfgID), "00000000", fmt.Sprintf("%040x", 0)}})
			if res.Errno != wantErrno {
				t.Errorf("config map update: errno %v, want %v", res.Errno, wantErrno)
			}
			by = fmt.Sprintf("by pid %d (%s)", res.PID, act.ActorComm())
			refused := map[bool]string{false: "", true: ", refused: operation not permitted"}[deny]
			bed.Expect(t, hooktest.Want{Kind: event.KindSensor, Action: sensor.ActionTamper, Denied: deny,
				Detail: fmt.Sprintf("bpf(BPF_MAP_GET_FD_BY_ID) on driftsensor map config_map (id %d) %s%s", cfgID, by, refused)}, res.PID)
			if !deny {
				bed.Expect(t, hooktest.Want{Kind: event.KindSensor, Action: sensor.ActionTamper,
					Detail: fmt.Sprintf("bpf(BPF_MAP_UPDATE_ELEM) on driftsensor map config_map (id %d) %s", cfgID, by)}, res.PID)
				if d := bed.Backend().Verify(); len(d) == 0 {
					t.Error("Verify found no difference after the config map was zeroed")
				}
			}
		})
	}
}
