package agent

import "github.com/driftsensor/driftsensor/sensor"

// verify runs the backend's integrity check (its configuration maps read
// back, its links still attached) and reports each difference as a tamper
// finding, in order with the kernel's findings.
func (d *Daemon) verify() {
	for _, diff := range d.cfg.Backend.Verify() {
		d.sensor.Report(sensor.ActionTamper, 0, diff)
	}
}

// kernelCounter is the liveness counter only the kernel program advances;
// reading it advances it (backend.Stats.KernelCounter). On a failed read it
// is 0, which a responder sees as a counter that went back.
func (d *Daemon) kernelCounter() uint64 {
	st, err := d.cfg.Backend.Stats()
	if err != nil {
		d.cfg.Log.Error().Err(err).Msg("read the kernel liveness counter")
		return 0
	}
	return st.KernelCounter
}
