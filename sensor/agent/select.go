package agent

import (
	"fmt"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/lsm"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// OpenBackend loads the backend asked for: "lsm", "tracepoint", or "auto",
// which takes lsm when BPF-LSM is active and its programs attach, and the
// tracepoint backend otherwise. why says which ran and why the other did not;
// heartbeats and the status table carry it.
func OpenBackend(name string, opts backend.Options) (b backend.Backend, why string, err error) {
	switch name {
	case tracepoint.Name:
		b, err := tracepoint.Load(opts)
		return b, "forced with --backend tracepoint", err
	case lsm.Name:
		if ok, reason := lsm.Available(); !ok {
			return nil, "", fmt.Errorf("--backend lsm: BPF-LSM is not usable here: %s; or run with --backend tracepoint (or auto)", reason)
		}
		b, err := lsm.Load(opts)
		return b, "forced with --backend lsm", err
	case "auto":
		ok, reason := lsm.Available()
		if ok {
			b, err := lsm.Load(opts)
			if err == nil {
				return b, "lsm: BPF-LSM is active and attached", nil
			}
			reason = err.Error()
		}
		b, err := tracepoint.Load(opts)
		return b, "tracepoint: lsm not usable: " + reason, err
	}
	return nil, "", fmt.Errorf("--backend %q: want auto, lsm or tracepoint", name)
}
