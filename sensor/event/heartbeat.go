package event

import "time"

// HeartbeatSchema names the version of the heartbeat format.
const HeartbeatSchema = "driftsensor.heartbeat/v1"

// Bounds of a sensor's heartbeat interval, which the responder's silence
// deadline is derived from: shorter burns a core, longer makes the dead man's
// switch meaningless.
const (
	MinHeartbeat = 100 * time.Millisecond
	MaxHeartbeat = 5 * time.Minute
)

// Heartbeat is what a sensor publishes every interval on drift.v1.<host>.heartbeat.
// Its absence is itself a signal: the responder's dead man's switch watches it.
type Heartbeat struct {
	Schema     string    `json:"schema"`
	Host       string    `json:"host"`
	Seq        uint64    `json:"seq"` // sequence number of the last finding assigned
	Time       time.Time `json:"time"`
	Backend    string    `json:"backend"`               // "tracepoint" or "lsm"
	BackendWhy string    `json:"backend_why,omitempty"` // why the other backend was not chosen
	PolicyHash string    `json:"policy_hash"`
	Version    string    `json:"version"`
	Commit     string    `json:"commit,omitempty"` // source commit of the sensor build
	UptimeSec  float64   `json:"uptime_sec"`
	State      State     `json:"state"`
	Transport  string    `json:"transport"` // how findings leave the host: jetstream, core, offline or unauthorized
	Counters   Counters  `json:"counters"`

	// IntervalMs is this sensor's heartbeat interval: the responder derives the
	// host's silence deadline from it, never from a fleet-wide guess.
	IntervalMs int64 `json:"interval_ms"`
	// Liveness proves that this heartbeat comes from the sensor that runs
	// now, on this boot, with its kernel program alive.
	Liveness Liveness `json:"liveness"`
	// StateWatch is the health of the sensor's watch on its host state in
	// the control plane: "ok", or why the applied State may be stale.
	StateWatch string `json:"state_watch,omitempty"`
}

// Liveness identifies one run of a sensor. A change of BootID, Instance or
// Started is a restart; KernelCounter is advanced only by the kernel program
// (records it produced or could not queue), so it never goes backwards
// within one instance, and a heartbeat replayed or forged from a dead
// sensor's values is visible as a counter that stopped or jumped back.
type Liveness struct {
	BootID        string    `json:"boot_id"`        // /proc/sys/kernel/random/boot_id
	Instance      string    `json:"instance"`       // random, new at every sensor start
	Started       time.Time `json:"started"`        // when this sensor instance started
	KernelCounter uint64    `json:"kernel_counter"` // advanced only by the kernel program
}

// Counters are the sensor's running totals since start.
type Counters struct {
	Findings    uint64  `json:"findings"`
	LostRecords uint64  `json:"lost_records"` // records the kernel could not queue
	RingFill    float64 `json:"ring_fill"`    // ring buffer fill ratio at the last sample, 0..1
	SpoolDepth  uint64  `json:"spool_depth"`  // findings numbered and not yet acked by the server: on disk (the spool) or in the sensor's memory queue
	SpoolLost   uint64  `json:"spool_lost"`   // findings dropped because the spool was full
	Rejected    uint64  `json:"rejected"`     // malformed or unauthorised control messages
}

// Transport modes, as heartbeats report them.
const (
	TransportJetStream = "jetstream" // findings kept in the stream, acknowledged
	TransportCore      = "core"      // the server has no JetStream: flushed, not kept
	TransportOffline   = "offline"   // not connected (or not yet probed): findings spool
	// TransportUnauthorized: the server refused the credentials, or the
	// JetStream calls they need; findings spool and the login is retried.
	TransportUnauthorized = "unauthorized"
)
