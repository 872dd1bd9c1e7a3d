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
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// bucketDestroyer destroys by looking into the evidence bucket: what it
// finds there was kept before the destroy.
type bucketDestroyer struct {
	js   jetstream.JetStream
	mu   sync.Mutex
	done map[string][]byte // incident -> the evidence object at destroy time (nil: none)
}

func (d *bucketDestroyer) Name() string { return "bucket-check" }

func (d *bucketDestroyer) Destroy(ctx context.Context, t actuator.Target) error {
	var raw []byte
	if store, err := d.js.ObjectStore(ctx, event.EvidenceBucket); err == nil {
		raw, _ = store.GetBytes(ctx, t.Incident)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done[t.Incident] = raw
	return nil
}

func (d *bucketDestroyer) destroyed() (string, []byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for inc, raw := range d.done {
		return inc, raw, true
	}
	return "", nil, false
}

// TestEvidenceLadder: a drift on a sealed test host with a destroy rule:
// the responder cordons (verified by a probe), then keeps the evidence (the
// finding with its process ancestry; the file as the host's sensor reads
// it: hash, size, head) before the destroyer runs; driftctl evidence shows
// it and saves it.
func TestEvidenceLadder(t *testing.T) {
	w := newWorld(t, false)
	etc := filepath.Join(w.img, "etc")
	pol, err := decide.ParsePolicy("r.yaml", []byte("rules:\n  - name: img-etc\n    kind: file\n    path_prefix: "+etc+"\n    action: destroy\n"))
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := nats.Connect(w.url)
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	js, _ := jetstream.New(w.nc)
	d := &bucketDestroyer{js: js, done: map[string][]byte{}}
	prober := &actuator.TCPProber{
		Addr: func(string) (string, error) { return netip.AddrPortFrom(w.web.Addr, echoPort).String(), nil },
		Dial: w.peer.DialContext,
	}
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: pol, CtlCordon: true, Prober: prober, Evidence: true,
		Destroyers: []actuator.Destroyer{d}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	audit := followAudit(t, w.nc, decide.AuditSubject("web"))
	sub := w.findingSub(t)

	pid := w.drift(t)
	w.waitBlocked(t)
	ev := w.driftFinding(t, sub, pid)
	testenv.Eventually(t, "the destroy", func() bool { _, _, ok := d.destroyed(); return ok })
	inc, raw, _ := d.destroyed()
	if raw == nil {
		t.Fatalf("no evidence of %s in %s when the destroyer ran", inc, event.EvidenceBucket)
	}
	var kept event.Evidence
	if err := json.Unmarshal(raw, &kept); err != nil {
		t.Fatal(err)
	}
	if len(kept.Chain) != 1 || !reflect.DeepEqual(kept.Chain[0], ev) || len(kept.Chain[0].Process.Ancestry) == 0 ||
		kept.Chain[0].Process.Ancestry[0].PID != uint32(os.Getpid()) {
		t.Fatalf("chain %+v, want exactly the finding %+v, with its ancestry from this test (pid %d)", kept.Chain, ev, os.Getpid())
	}
	sum := sha256.Sum256([]byte("evil\n"))
	passwd := filepath.Join(etc, "passwd")
	if len(kept.Files) != 1 || kept.Files[0].Path != passwd || kept.Files[0].Size != 5 || string(kept.Files[0].Head) != "evil\n" ||
		!kept.Files[0].Hashed || kept.Files[0].SHA256 != hex.EncodeToString(sum[:]) || kept.Files[0].Error != "" {
		t.Fatalf("files %+v, want %s as the sensor read it", kept.Files, passwd)
	}
	// The trail: cordon verified, then evidence, then destroy.
	v := audit.wait(t, "the verified cordon", stageOf(inc, decide.StageVerify))
	if v.Error != "" || v.Stages.Verified.IsZero() {
		t.Fatalf("verify record %+v", v)
	}
	e := audit.wait(t, "the evidence record", stageOf(inc, decide.StageEvidence))
	a := audit.wait(t, "the destroy record", func(r decide.Record) bool {
		return r.Incident == inc && r.Stage == decide.StageAction && r.Action == decide.ActDestroy
	})
	if e.Error != "" || e.Stages.Evidence.IsZero() || a.Error != "" || a.Actuator != "bucket-check" {
		t.Fatalf("evidence record %+v, destroy record %+v", e, a)
	}

	// driftctl evidence shows it and saves it.
	ctl := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftctl")
	out := filepath.Join(t.TempDir(), "saved")
	b, err := exec.Command(ctl, "--nats", w.url, "evidence", inc, "--out", out).CombinedOutput()
	if err != nil {
		t.Fatalf("driftctl evidence: %v\n%s", err, b)
	}
	for _, want := range []string{"incident " + inc + "  host web\n", "file open_write " + passwd + "  [" + ev.ID + "]",
		"sha256 " + hex.EncodeToString(sum[:]), `first 5 bytes: "evil\n"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("driftctl evidence output lacks %q:\n%s", want, b)
		}
	}
	if got, err := os.ReadFile(filepath.Join(out, "evidence.json")); err != nil || string(got) != string(raw) {
		t.Errorf("saved evidence.json: %v (%d bytes, want the %d stored)", err, len(got), len(raw))
	}
	if got, err := os.ReadFile(filepath.Join(out, "files", "1-passwd.head")); err != nil || string(got) != "evil\n" {
		t.Errorf("saved head: %q, %v", got, err)
	}
}
