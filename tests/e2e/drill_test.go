package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// operator makes the operator's nkey: its seed file and its public key.
func operator(t *testing.T) (string, string, nkeys.KeyPair) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	file := filepath.Join(t.TempDir(), "admin.nk")
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pub, kp
}

// drillResponder runs a responder that cordons (for real, verified by the
// peer's probe) on any finding of web, keeps evidence, syncs host states,
// and trusts drill markers signed by keys.
func drillResponder(t *testing.T, w *world, keys ...string) {
	t.Helper()
	pol, err := decide.ParsePolicy("r.yaml", []byte("default: cordon\n"))
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := nats.Connect(w.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	prober := &actuator.TCPProber{
		Addr: func(string) (string, error) { return netip.AddrPortFrom(w.web.Addr, echoPort).String(), nil },
		Dial: w.peer.DialContext,
	}
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: pol, CtlCordon: true, Prober: prober, Evidence: true,
		DrillKeys: keys, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
}

// decisionsOfAll waits until every finding of web the stream holds has its
// decision in the trail, and returns those decisions: a barrier, so that
// what is absent from them is absent.
func decisionsOfAll(t *testing.T, w *world, audit *auditTrail) []decide.Record {
	t.Helper()
	js, _ := jetstream.New(w.nc)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.WaitBound)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, event.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{event.Subject("web", event.KindFile), event.Subject("web", event.KindExec)}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		b, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			var ev event.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.ID == "" {
				t.Fatalf("finding in the stream on %s: %v: %s", m.Subject(), err, m.Data())
			}
			ids = append(ids, ev.ID)
		}
		if n == 0 {
			break
		}
	}
	if len(ids) == 0 {
		t.Fatal("no finding of web in the stream")
	}
	var out []decide.Record
	for _, id := range ids {
		out = append(out, audit.wait(t, "the decision of finding "+id, func(r decide.Record) bool {
			return r.Stage == decide.StageDecision && slices.Contains(r.Events, id)
		}))
	}
	return out
}

// drillReport is what driftctl drill --json prints (the fields read here).
type drillReport struct {
	Marker   event.DrillMarker `json:"marker"`
	Run      *event.DrillRun   `json:"run"`
	Incident string            `json:"incident"`
	Complete bool              `json:"complete"`
	Stages   []struct {
		Name  string `json:"stage"`
		Error string `json:"error"`
	} `json:"stages"`
}

func stageNames(rep *drillReport) []string {
	var out []string
	for _, s := range rep.Stages {
		if s.Error != "" {
			out = append(out, s.Name+": "+s.Error)
		} else {
			out = append(out, s.Name)
		}
	}
	return out
}

// runDrill runs the driftctl binary's live drill on web, signing with the
// operator's seed (the test bed's server takes no credentials).
func runDrill(t *testing.T, w *world, seed, mode string) *drillReport {
	t.Helper()
	ctl := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftctl")
	cmd := exec.Command(ctl, "--nats", w.url, "drill", "--sign-nkey", seed, "--host", "web", "--mode", mode, "--json", "--wait", "20s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("driftctl drill: %v\n%s%s", err, out, stderr.String())
	}
	var rep drillReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("driftctl drill --json: %v\n%s", err, out)
	}
	return &rep
}

// TestLiveDrillCordonReleases: driftctl drill --host web --mode cordon with
// the operator's key: the sensor performs the techniques in its drill
// directory, every finding goes to the drill's incident (none to a real
// one), the host is cordoned for real (verified by the probe), its evidence
// kept, and released: it answers again and is sealed.
func TestLiveDrillCordonReleases(t *testing.T) {
	w := newWorld(t, false)
	seed, pub, _ := operator(t)
	drillResponder(t, w, pub)
	audit := followAudit(t, w.nc, decide.AuditSubject("web"))

	rep := runDrill(t, w, seed, event.DrillCordon)
	want := []string{"sensed", "received", "decided", "cordoned (ctl)", "verified", "evidence", "released"}
	if !rep.Complete || !slices.Equal(stageNames(rep), want) || rep.Run == nil || rep.Run.Dir != filepath.Join(w.img, "drill", "driftsensor-drill-"+rep.Marker.ID) {
		t.Fatalf("report: complete %v, stages %q (want %q), run %+v", rep.Complete, stageNames(rep), want, rep.Run)
	}
	for _, d := range decisionsOfAll(t, w, audit) {
		if d.Incident != "drill-"+rep.Marker.ID || d.Drill != rep.Marker.ID || d.Action != decide.ActCordon || !d.Stages.Sensed.Before(d.Stages.Decided) {
			t.Errorf("decision %+v: want it in the drill's incident", d)
		}
	}
	w.mustPass(t) // released
	if on, _ := w.gate.Cordoned(); on {
		t.Fatal("the gate is still closed after the drill")
	}
	// The evidence has the drill's first technique's file, as the sensor
	// read it: the copy of /bin/true (exec runs first, in name order).
	js, _ := jetstream.New(w.nc)
	store, err := js.ObjectStore(context.Background(), event.EvidenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := store.GetBytes(context.Background(), rep.Incident)
	if err != nil {
		t.Fatal(err)
	}
	var kept event.Evidence
	if err := json.Unmarshal(raw, &kept); err != nil {
		t.Fatalf("evidence of incident %s: %v: %s", rep.Incident, err, raw)
	}
	trueBin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(trueBin)
	tool := filepath.Join(rep.Run.Dir, "tool")
	if kept.Drill != rep.Marker.ID || len(kept.Files) != 1 {
		t.Fatalf("evidence of drill %s: drill %q, %d files, want 1", rep.Marker.ID, kept.Drill, len(kept.Files))
	}
	if f := kept.Files[0]; f.Path != tool || f.Error != "" || f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(trueBin)) {
		t.Fatalf("evidence file %s (%d bytes, sha256 %s, error %q), want %s with /bin/true's size and hash", f.Path, f.Size, f.SHA256, f.Error, tool)
	}
}

// TestLiveDrillRecordOnly: in record mode the responder decides and keeps
// evidence but never cordons; the host answers throughout.
func TestLiveDrillRecordOnly(t *testing.T) {
	w := newWorld(t, false)
	seed, pub, _ := operator(t)
	drillResponder(t, w, pub)
	audit := followAudit(t, w.nc, decide.AuditSubject("web"))

	rep := runDrill(t, w, seed, event.DrillRecord)
	if want := []string{"sensed", "received", "decided", "evidence"}; !rep.Complete || !slices.Equal(stageNames(rep), want) {
		t.Fatalf("report: complete %v, stages %q, want %q", rep.Complete, stageNames(rep), want)
	}
	for _, d := range decisionsOfAll(t, w, audit) {
		if d.Incident != "drill-"+rep.Marker.ID || !d.DryRun {
			t.Errorf("decision %+v: want a recorded-only decision of the drill", d)
		}
	}
	if acts := audit.find(func(r decide.Record) bool { return r.Stage == decide.StageAction }); len(acts) != 0 {
		t.Fatalf("a record-only drill acted: %+v", acts)
	}
	w.mustPass(t)
}

// TestFakeDrillMarkersAreRealIncidents: a marker signed by the host's own
// key, an expired one and an unsigned one are refused by the responder
// (saying why), and the very same techniques are then real drift: a real
// incident, a real cordon.
func TestFakeDrillMarkersAreRealIncidents(t *testing.T) {
	_, opPub, opKey := operator(t)
	hostKey, _ := nkeys.CreateUser()
	hostPub, _ := hostKey.PublicKey()
	now := time.Now()
	marker := func(issued time.Time) event.DrillMarker {
		return event.DrillMarker{Schema: event.DrillSchema, ID: "fake" + strings.ReplaceAll(issued.Format("150405.000000"), ".", ""), Host: "web",
			Mode: event.DrillRecord, Techniques: []string{"file"}, Issued: issued, Expires: issued.Add(time.Minute)}
	}
	for _, tc := range []struct {
		name string
		make func() (event.DrillMarker, []byte)
		want string
	}{
		{"signed by the host", func() (event.DrillMarker, []byte) {
			m := marker(now)
			b, err := event.SignMarker(m, hostKey)
			if err != nil {
				t.Fatal(err)
			}
			return m, b
		}, "drill marker signed by " + hostPub + ", which is not an operator key this responder trusts"},
		{"expired", func() (event.DrillMarker, []byte) {
			m := marker(now.Add(-3 * time.Minute))
			b, err := event.SignMarker(m, opKey)
			if err != nil {
				t.Fatal(err)
			}
			return m, b
		}, "expired at"},
		{"unsigned", func() (event.DrillMarker, []byte) {
			m := marker(now.Add(time.Microsecond))
			body, _ := json.Marshal(m)
			b, _ := json.Marshal(event.SignedMarker{Marker: body})
			return m, b
		}, "drill marker is unsigned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, false)
			drillResponder(t, w, opPub)
			audit := followAudit(t, w.nc, decide.AuditSubject("web"))
			m, signed := tc.make()
			js, _ := jetstream.New(w.nc)
			kv, err := js.KeyValue(context.Background(), event.DrillBucket)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(context.Background(), "web", signed); err != nil {
				t.Fatal(err)
			}
			arm, _ := json.Marshal(map[string]string{"host": "web", "id": m.ID})
			msg, err := w.nc.Request(event.DrillArmSubject, arm, testenv.WaitBound)
			if err != nil {
				t.Fatal(err)
			}
			if rep, _ := event.DecodeCtlReply(msg.Data); rep.OK || !strings.Contains(rep.Error, tc.want) {
				t.Fatalf("arm reply %+v, want a refusal saying %q", rep, tc.want)
			}
			cmd, _ := event.NewCtlCommandArg(event.CmdDrill, m.ID, "file")
			msg, err = w.nc.Request(event.CtlSubject("web"), cmd.Encode(), testenv.WaitBound)
			if err != nil {
				t.Fatal(err)
			}
			if rep, _ := event.DecodeCtlReply(msg.Data); !rep.OK || rep.Drill == nil {
				t.Fatalf("the sensor's drill reply %+v", rep)
			}
			w.waitBlocked(t) // a real cordon
			decs := decisionsOfAll(t, w, audit)
			for _, d := range decs {
				if !strings.HasPrefix(d.Incident, "inc-") || d.Drill != "" || d.DryRun || d.Action != decide.ActCordon {
					t.Errorf("decision %+v: want a real incident", d)
				}
			}
		})
	}
}
