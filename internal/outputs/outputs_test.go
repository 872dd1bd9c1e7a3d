package outputs

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

func records(n int, source string) []Record {
	out := make([]Record, n)
	for i := range out {
		id := fmt.Sprintf("%s-%03d", source, i)
		out[i] = Record{ID: id, Time: time.Date(2026, 3, 1, 12, 0, 0, i*1000, time.UTC), Host: "web-1", Source: source,
			Severity: 2, Doc: []byte(fmt.Sprintf(`{"id":%q,"host":"web-1","path":"/etc/x \"quoted\" ]"}`, id))}
	}
	return out
}

// quick keeps retries fast: the tests are about what is retried, not when.
var quick = Config{Backoff: time.Millisecond, MaxWait: 5 * time.Millisecond}

// received is what a receiver got, in order.
type received struct {
	mu   sync.Mutex
	msgs []*rfc5424.SyslogMessage
	errs []error
	cond chan struct{}
}

func newReceived() *received { return &received{cond: make(chan struct{}, 1)} }

func (r *received) add(m syslog.Message, err error) {
	r.mu.Lock()
	if err != nil {
		r.errs = append(r.errs, err)
	} else {
		r.msgs = append(r.msgs, m.(*rfc5424.SyslogMessage))
	}
	r.mu.Unlock()
	select {
	case r.cond <- struct{}{}:
	default:
	}
}

func (r *received) wait(t *testing.T, n int) []*rfc5424.SyslogMessage {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got, errs := append([]*rfc5424.SyslogMessage(nil), r.msgs...), r.errs
		r.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("the receiver's RFC 5424 parser refused a message: %v", errs[0])
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-r.cond:
		case <-deadline:
			for _, m := range got {
				t.Log((*m.StructuredData)[syslogSDID]["id"])
			}
			t.Fatalf("receiver got %d messages, want %d", len(got), n)
		}
	}
}

// checkSyslog asserts the messages are recs, in order, field by field.
func checkSyslog(t *testing.T, got []*rfc5424.SyslogMessage, recs []Record) {
	t.Helper()
	if len(got) != len(recs) {
		t.Fatalf("got %d messages, want %d", len(got), len(recs))
	}
	for i, m := range got {
		r := recs[i]
		sd := *m.StructuredData
		switch {
		case *m.Facility != syslogFacility || *m.Severity != uint8(r.Severity):
			t.Errorf("message %d: facility %d severity %d, want %d %d", i, *m.Facility, *m.Severity, syslogFacility, r.Severity)
		case *m.Hostname != r.Host || *m.Appname != syslogApp || *m.MsgID != r.Source:
			t.Errorf("message %d: host %q app %q msgid %q", i, *m.Hostname, *m.Appname, *m.MsgID)
		case !m.Timestamp.Equal(r.Time):
			t.Errorf("message %d: time %v, want %v", i, m.Timestamp, r.Time)
		case sd[syslogSDID]["id"] != r.ID:
			t.Errorf("message %d: structured data %v, want id %s", i, sd, r.ID)
		case *m.Message != string(r.Doc):
			t.Errorf("message %d: MSG %q, want %q", i, *m.Message, r.Doc)
		}
	}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := newReceived()
	go func() {
		p := rfc5424.NewParser()
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.add(p.Parse(buf[:n]))
		}
	}()
	o, err := Open("syslog+udp://"+pc.LocalAddr().String(), quick)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	recs := records(20, "finding")
	if err := o.Deliver(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	checkSyslog(t, got.wait(t, len(recs)), recs)
	if o.Stats.Sent.Load() != 20 || o.Stats.Acked.Load() != 0 {
		t.Errorf("sent %d acknowledged %d, want 20 and 0 (syslog has no acknowledgement)", o.Stats.Sent.Load(), o.Stats.Acked.Load())
	}
}

// streamReceiver accepts connections on l and parses octet-counted frames;
// each connection is closed after closeAfter messages (0: never), to prove
// the sender dials again and resends.
func streamReceiver(l net.Listener, got *received, closeAfter int) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			n := 0
			var r io.Reader = c
			if closeAfter > 0 {
				r = &limitFrames{c: c, left: closeAfter}
			}
			octetcounting.NewParser(syslog.WithListener(func(res *syslog.Result) {
				n++
				got.add(res.Message, res.Error)
			})).Parse(r)
		}()
	}
}

// limitFrames ends the stream after left frames: it reads one frame at a
// time so nothing of a later frame is consumed and lost by the receiver.
type limitFrames struct {
	c    net.Conn
	br   *bufio.Reader
	left int
	buf  []byte
}

func (l *limitFrames) Read(p []byte) (int, error) {
	if l.br == nil {
		l.br = bufio.NewReader(l.c)
	}
	if len(l.buf) == 0 {
		if l.left == 0 {
			l.c.Close()
			return 0, io.EOF
		}
		size, err := l.br.ReadString(' ')
		if err != nil {
			return 0, err
		}
		var n int
		fmt.Sscanf(size, "%d ", &n)
		frame := make([]byte, n)
		if _, err := io.ReadFull(l.br, frame); err != nil {
			return 0, err
		}
		l.buf = append([]byte(size), frame...)
		if l.left--; l.left == 0 {
			// Closed before the frame is parsed and counted: a sender that
			// sees the count sees the close too.
			l.c.Close()
		}
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

func TestSyslogTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := newReceived()
	go streamReceiver(l, got, 0)
	o, err := Open("syslog+tcp://"+l.Addr().String(), quick)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	recs := records(50, "alert")
	if err := o.Deliver(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	checkSyslog(t, got.wait(t, len(recs)), recs)
	if s, a := o.Stats.Sent.Load(), o.Stats.Acked.Load(); s != 50 || a != 0 {
		t.Errorf("sent %d acknowledged %d, want 50 written and 0 acknowledged (RFC 6587 has no acknowledgement)", s, a)
	}
}

// A receiver that goes away is dialled again: the records from the one that
// failed on are sent on the new connection, and the receiver has them all.
func TestSyslogTCPReconnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := newReceived()
	go streamReceiver(l, got, 3)
	o, err := Open("syslog+tcp://"+l.Addr().String(), quick)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	recs := records(9, "finding")
	for i, r := range recs {
		// One at a time, waiting for each, so a write into a connection the
		// receiver already closed fails on the next record (it is retried).
		if err := o.Deliver(context.Background(), []Record{r}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 {
			got.wait(t, i+1)
		}
	}
	checkSyslog(t, got.wait(t, len(recs)), recs)
}

func TestSyslogTLS(t *testing.T) {
	cert, caFile := selfSigned(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := newReceived()
	go streamReceiver(l, got, 0)
	o, err := Open("syslog+tls://"+l.Addr().String()+"?ca="+caFile, quick)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	recs := records(30, "finding")
	if err := o.Deliver(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	checkSyslog(t, got.wait(t, len(recs)), recs)

	// Without the CA the receiver's certificate is refused: nothing is sent,
	// and Deliver says why when it gives up.
	bad, err := Open("syslog+tls://"+l.Addr().String(), quick)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // retried until then: the error is the handshake's
	defer cancel()
	if err := bad.Deliver(ctx, recs[:1]); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("delivery to an untrusted receiver: %v, want a certificate error", err)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and writes it as a CA file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog receiver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// collector is an HTTP server answering like HEC or _bulk: each request is
// answered by the next function in script (the last one repeats).
type collector struct {
	mu      sync.Mutex
	script  []func(w http.ResponseWriter, body []byte)
	bodies  [][]byte
	headers []http.Header
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bodies = append(c.bodies, body)
	c.headers = append(c.headers, r.Header.Clone())
	step := c.script[0]
	if len(c.script) > 1 {
		c.script = c.script[1:]
	}
	c.mu.Unlock()
	step(w, body)
}

func status(code int, answer string) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, _ []byte) {
		w.WriteHeader(code)
		io.WriteString(w, answer)
	}
}

// hecEvents decodes a HEC request body.
func hecEvents(t *testing.T, body []byte) []hecEvent {
	t.Helper()
	var out []hecEvent
	dec := json.NewDecoder(strings.NewReader(string(body)))
	for dec.More() {
		var e hecEvent
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("HEC body: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// HEC answers 503 (busy) and 429 before taking the batch: the same batch is
// sent three times, and counted as retried twice and sent once.
func TestHECRetries(t *testing.T) {
	c := &collector{script: []func(http.ResponseWriter, []byte){
		status(503, `{"text":"Server is busy","code":9}`),
		status(429, `{"text":"Too many requests"}`),
		status(200, `{"text":"Success","code":0}`),
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	t.Setenv("DRIFT_HEC_TOKEN", "")
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("00000000-1111-2222-3333-444444444444\n"), 0o600)
	o, err := Open("hec+"+srv.URL+"?token-file="+tok, quick)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(5, "finding")
	if err := o.Deliver(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(c.bodies) != 3 {
		t.Fatalf("%d requests, want 3", len(c.bodies))
	}
	for i, b := range c.bodies {
		if got := c.headers[i].Get("Authorization"); got != "Splunk 00000000-1111-2222-3333-444444444444" {
			t.Errorf("request %d: Authorization %q", i, got)
		}
		ev := hecEvents(t, b)
		if len(ev) != 5 {
			t.Fatalf("request %d: %d events", i, len(ev))
		}
		for j, e := range ev {
			if string(e.Event) != string(recs[j].Doc) || e.Host != "web-1" || e.Sourcetype != "driftsensor:finding" || e.Time != float64(recs[j].Time.UnixMicro())/1e6 {
				t.Errorf("request %d event %d: %+v", i, j, e)
			}
		}
	}
	if s, a, r := o.Stats.Sent.Load(), o.Stats.Acked.Load(), o.Stats.Retried.Load(); s != 5 || a != 5 || r != 10 {
		t.Errorf("sent %d acknowledged %d retried %d, want 5, 5 and 10", s, a, r)
	}
}

// A 400 is not retried: the batch is counted as refused and reported.
func TestHECRefused(t *testing.T) {
	c := &collector{script: []func(http.ResponseWriter, []byte){status(400, `{"text":"Invalid data format","code":6,"invalid-event-number":0}`)}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	t.Setenv("DRIFT_HEC_TOKEN", "tok")
	var warned []string
	cfg := quick
	cfg.Warn = func(msg string, err error) { warned = append(warned, fmt.Sprint(msg, ": ", err)) }
	o, err := Open("hec+"+srv.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Deliver(context.Background(), records(3, "alert")); err != nil {
		t.Fatal(err)
	}
	if len(c.bodies) != 1 || o.Stats.Refused.Load() != 3 || o.Stats.Sent.Load() != 0 {
		t.Errorf("%d requests, refused %d, sent %d; want 1, 3, 0", len(c.bodies), o.Stats.Refused.Load(), o.Stats.Sent.Load())
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "400 Bad Request") || !strings.Contains(warned[0], "Invalid data format") {
		t.Errorf("warnings %q, want one naming the 400 and HEC's text", warned)
	}
}

// bulkItems answers a _bulk request with one status per document, in order.
func bulkItems(statuses ...int) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, body []byte) {
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		var a struct {
			Errors bool             `json:"errors"`
			Items  []map[string]any `json:"items"`
		}
		for i := 0; i < len(lines); i += 2 {
			st := statuses[min(i/2, len(statuses)-1)]
			item := map[string]any{"status": st}
			if st >= 300 {
				a.Errors = true
				item["error"] = map[string]string{"type": "es_rejected_execution_exception", "reason": fmt.Sprintf("status %d", st)}
			}
			a.Items = append(a.Items, map[string]any{"create": item})
		}
		json.NewEncoder(w).Encode(a)
	}
}

// _bulk: a 502 for the whole request, then per-item answers: created, 429
// (busy: sent again), 409 (stored by an earlier send: done), 400 (refused for
// good). Only the 429 item is sent again, alone.
func TestBulkPerItem(t *testing.T) {
	c := &collector{script: []func(http.ResponseWriter, []byte){
		status(502, "bad gateway"),
		bulkItems(201, 429, 409, 400),
		bulkItems(201),
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "bulk+http://elastic:s3cret@", 1) + "/drift-findings"
	o, err := Open(u, quick)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(o.Name, "s3cret") {
		t.Errorf("output name %q shows the password", o.Name)
	}
	recs := records(4, "finding")
	if err := o.Deliver(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(c.bodies) != 3 {
		t.Fatalf("%d requests, want 3", len(c.bodies))
	}
	if got := c.headers[0].Get("Authorization"); got != "Basic ZWxhc3RpYzpzM2NyZXQ=" {
		t.Errorf("Authorization %q", got)
	}
	want := func(recs ...Record) string {
		var b strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&b, `{"create":{"_index":"drift-findings","_id":%q}}`+"\n%s\n", r.ID, r.Doc)
		}
		return b.String()
	}
	if string(c.bodies[1]) != want(recs...) {
		t.Errorf("bulk body:\n%s\nwant:\n%s", c.bodies[1], want(recs...))
	}
	if string(c.bodies[2]) != want(recs[1]) {
		t.Errorf("retry body:\n%s\nwant only %s", c.bodies[2], recs[1].ID)
	}
	if s, a, r, f := o.Stats.Sent.Load(), o.Stats.Acked.Load(), o.Stats.Refused.Load(), o.Stats.Retried.Load(); s != 3 || a != 3 || r != 1 || f != 5 {
		t.Errorf("sent %d acknowledged %d refused %d retried %d; want 3, 3, 1, 5", s, a, r, f)
	}
}

// Queue mode: while the collector holds the first batch, the queue fills;
// every record past its size is dropped and counted exactly, the collector
// answers 429 once and then takes everything queued, in order.
func TestQueueOverflowCounted(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{})
	c := &collector{script: []func(http.ResponseWriter, []byte){
		func(w http.ResponseWriter, b []byte) { close(first); <-release; status(429, "busy")(w, b) },
		bulkItems(201),
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	var mu sync.Mutex
	var warned []string
	cfg := quick
	cfg.Queue, cfg.Batch = 10, 100
	cfg.Warn = func(msg string, err error) { mu.Lock(); warned = append(warned, msg); mu.Unlock() }
	o, err := Open("bulk+"+srv.URL+"/alerts", cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Start()
	recs := records(1+10+7, "alert")
	o.Enqueue(recs[0])
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first record never reached the collector")
	}
	accepted := 0
	for _, r := range recs[1:] {
		if o.Enqueue(r) {
			accepted++
		}
	}
	if accepted != 10 || o.Stats.Dropped.Load() != 7 {
		t.Fatalf("queued %d, dropped %d; want 10 and 7", accepted, o.Stats.Dropped.Load())
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range c.bodies[1:] {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var a bulkAction
			if json.Unmarshal([]byte(line), &a) == nil && a.Create.ID != "" {
				ids = append(ids, a.Create.ID)
			}
		}
	}
	var want []string
	for _, r := range recs[:11] {
		want = append(want, r.ID)
	}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("collector stored %v, want %v", ids, want)
	}
	if s, r, f := o.Stats.Sent.Load(), o.Stats.Retried.Load(), o.Stats.Failed.Load(); s != 11 || r != 1 || f != 0 {
		t.Errorf("sent %d retried %d failed %d; want 11, 1, 0", s, r, f)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(warned, "\n"), "queue full (10 records)") {
		t.Errorf("warnings %q: want the overflow reported", warned)
	}
}

// A collector that never takes the batch: after Attempts sends the records
// are given up on and counted as failed.
func TestQueueGivesUp(t *testing.T) {
	c := &collector{script: []func(http.ResponseWriter, []byte){status(500, "down")}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	cfg := quick
	cfg.Attempts = 3
	t.Setenv("DRIFT_HEC_TOKEN", "tok")
	o, err := Open("hec+"+srv.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Start()
	o.Enqueue(records(1, "alert")[0])
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(c.bodies) != 3 || o.Stats.Failed.Load() != 1 || o.Stats.Retried.Load() != 2 {
		t.Errorf("%d requests, failed %d, retried %d; want 3, 1, 2", len(c.bodies), o.Stats.Failed.Load(), o.Stats.Retried.Load())
	}
}

func TestOpenRefusesBadDestinations(t *testing.T) {
	t.Setenv("DRIFT_HEC_TOKEN", "")
	for dest, want := range map[string]string{
		"syslog://127.0.0.1:514":          "want syslog+udp|tcp|tls",
		"syslog+udp://127.0.0.1":          "needs a port",
		"syslog+sctp://127.0.0.1:514":     `syslog over "sctp"`,
		"kafka+tcp://127.0.0.1:9092":      `unknown output "kafka"`,
		"hec+https://splunk:8088":         "no HEC token",
		"bulk+https://es:9200":            "want the index as the path",
		"bulk+ftp://es:9200/x":            `over "ftp"`,
		"syslog+tls://h:6514?ca=/nope":    "ca: open /nope",
		"syslog+tls://h:6514?cert=/a.pem": "cert and key go together",
	} {
		_, err := Open(dest, Config{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v, want an error containing %q", dest, err, want)
		}
	}
}
