package event

import "time"

// HeartbeatSchema names the version of the heartbeat format.
const HeartbeatSchema = "driftsensor.heartbeat/v1"

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
	UptimeSec  float64   `json:"uptime_sec"`
	State      State     `json:"state"`
	Transport  string    `json:"transport"` // how findings leave the host: jetstream, core or offline
	Counters   Counters  `json:"counters"`
}

// Counters are the sensor's running totals since start.
type Counters struct {
	Findings    uint64  `json:"findings"`
	LostRecords uint64  `json:"lost_records"` // records the kernel could not queue
	RingFill    float64 `json:"ring_fill"`    // ring buffer fill ratio at the last sample, 0..1
	SpoolDepth  uint64  `json:"spool_depth"`  // findings waiting on disk for the server
	SpoolLost   uint64  `json:"spool_lost"`   // findings dropped because the spool was full
	Rejected    uint64  `json:"rejected"`     // malformed or unauthorised control messages
}
