package creds

import (
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Permissions are one user's subject permissions, as nats-server takes them.
// A deny wins over an allow.
type Permissions struct {
	PublishAllow   []string
	PublishDeny    []string
	SubscribeAllow []string
	SubscribeDeny  []string
	// AllowResponses lets the user answer requests it received (one reply
	// per request, on the request's reply subject) without a publish grant
	// on _INBOX.>: how a sensor answers ctl pings.
	AllowResponses bool
}

// JetStream names the permissions refer to.
const (
	jsAPI       = "$JS.API."
	kvStream    = "KV_" + event.StateBucket // the stream behind the host state bucket
	kvPrefix    = "$KV." + event.StateBucket + "."
	inboxes     = "_INBOX.>" // nats.go's default inbox prefix: request replies, JetStream acks, push consumer deliveries
	auditPrefix = "drift.audit"
)

// HostPermissions are what host's sensor needs and nothing it could use to
// speak for another host or to change its own state:
//
//   - publish its findings and heartbeats on drift.v1.<host>.{file,exec,net,sensor,heartbeat};
//   - the JetStream calls the publisher makes: account info, stream info of
//     DRIFT (publishes then go to the stream subjects above and are acked on
//     an inbox);
//   - watch its own key of the state bucket: bucket info, an ordered
//     consumer filtered on $KV.drift_hosts.<host> (the server refuses a
//     create whose filter differs from the one in the subject) and its
//     deletion when the watch stops, a direct get of that key;
//   - receive commands on drift.v1.<host>.ctl and answer them (responses only).
//
// Not granted, and denied explicitly so that a broader allow added later does
// not grant them by accident: drift.v1.*.state (audit records of state
// changes), every ctl subject, $KV.> (state changes: a host cannot unseal
// itself), creating or changing streams, consumers on other keys, reading
// other hosts' findings, and direct gets from the findings stream. A direct
// get answers with the stored message verbatim on the reply subject the
// client chose: a host could store a finding that names another host on its
// own subject and have the server replay it on drift.v1.<other>.file, where
// it passes every check a consumer can make. (The publisher's read of its
// last sequence number at start is therefore refused; it continues from its
// sequence file.)
//
// A host's replies (acks, API answers, its state watch) arrive under its own
// inbox prefix, _INBOX_<host>, and it may subscribe to nothing else there.
//
// Known over-grants, inherent to NATS: CONSUMER.DELETE on the state bucket's stream takes any consumer name, but
// names are random and a host cannot list them; a consumer's deliver subject
// and a request's reply subject are the client's choice, so a host can make
// the server send its own state value, a publish ack or API response JSON
// to any subject. None of these carry content the host chooses, and
// consumers reject them by schema (TestHostCannotForgeThroughTheServer).
func HostPermissions(host string) Permissions {
	root := event.SubjectRoot + "." + host + "."
	return Permissions{
		PublishAllow: []string{
			event.Subject(host, event.KindFile),
			event.Subject(host, event.KindExec),
			event.Subject(host, event.KindNet),
			event.Subject(host, event.KindSensor),
			event.HeartbeatSubject(host),
			jsAPI + "INFO",
			jsAPI + "STREAM.INFO." + event.StreamName,
			jsAPI + "STREAM.INFO." + kvStream,
			jsAPI + "CONSUMER.CREATE." + kvStream + ".*." + kvPrefix + host,
			jsAPI + "CONSUMER.DELETE." + kvStream + ".*",
			jsAPI + "DIRECT.GET." + kvStream + "." + kvPrefix + host,
		},
		PublishDeny: []string{
			event.SubjectRoot + ".*.state",
			event.SubjectRoot + ".*." + event.CtlTok,
			event.SubjectRoot + "." + event.CtlTok + ".>",
			"$KV.>",
			jsAPI + "STREAM.CREATE.>",
			jsAPI + "STREAM.UPDATE.>",
			jsAPI + "STREAM.DELETE.>",
			jsAPI + "STREAM.PURGE.>",
			jsAPI + "STREAM.MSG.>",
			jsAPI + "DIRECT.GET." + event.StreamName + ".>",
			jsAPI + "DIRECT.GET." + event.StreamName,
		},
		SubscribeAllow: []string{
			root + event.CtlTok,
			transport.InboxPrefix(host) + ".>", // its own inboxes only: not other clients' replies
		},
		AllowResponses: true,
	}
}

// ResponderPermissions let driftresponder read every finding and heartbeat,
// send commands to any host, change host states (and write their audit
// records), keep its own buckets and the audit stream. It cannot publish
// findings or heartbeats, and cannot delete, purge or reconfigure the
// findings and audit streams: the trail it writes is not one it can erase.
func ResponderPermissions() Permissions {
	return Permissions{
		PublishAllow: []string{
			event.SubjectRoot + ".*." + event.CtlTok,
			event.SubjectRoot + ".*.state",
			auditPrefix + ".>",
			"$KV.>",                             // the state bucket and the responder's claim and limit buckets
			"$O." + event.EvidenceBucket + ".>", // evidence it keeps (chunks and their meta)
			jsAPI + ">",
			"$JS.ACK.>",
			"$JS.FC.>",
		},
		PublishDeny: []string{
			jsAPI + "STREAM.DELETE.>",
			jsAPI + "STREAM.PURGE.>",
			jsAPI + "STREAM.MSG.DELETE.>",
			jsAPI + "STREAM.UPDATE." + event.StreamName,
			jsAPI + "STREAM.UPDATE." + event.AuditStream,
			jsAPI + "STREAM.UPDATE." + kvStream,
			jsAPI + "ACCOUNT.>",
		},
		SubscribeAllow: []string{
			event.SubjectRoot + ".>",
			auditPrefix + ".>",
			inboxes,
		},
		AllowResponses: true,
	}
}

// AdminPermissions are driftctl's: everything.
func AdminPermissions() Permissions {
	return Permissions{PublishAllow: []string{">"}, SubscribeAllow: []string{">"}}
}
