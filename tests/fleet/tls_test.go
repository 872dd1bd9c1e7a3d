package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// pki is a CA of the test's own and the files it signed.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "driftsensor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for name (a server on 127.0.0.1, or a client)
// and returns its certificate and key files.
func (p *pki) issue(t *testing.T, name string, server bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// The fleet over mutual TLS with certificates the test makes: the real
// nats-server requires and verifies client certificates on top of the nkeys
// driftctl creds wrote; driftctl, the real driftresponder and the sensor's
// transport all connect with --tls-ca/--tls-cert/--tls-key (Options), the
// sensor follows a seal and its findings land in the stream. Without a client
// certificate the server refuses the connection.
func TestFleetOverMutualTLS(t *testing.T) {
	bin := binaries(t)
	pk := newPKI(t)
	srvCert, srvKey := pk.issue(t, "server", true)
	cliCert, cliKey := pk.issue(t, "client", false)
	dir := t.TempDir()
	fleetDir := filepath.Join(dir, "fleet")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctl := filepath.Join(bin, "driftctl")
	if code, out := run(t, exec.Command(ctl, "creds", "--hosts", "web-1", "--out", fleetDir, "--nats-listen", addr)); code != 0 {
		t.Fatalf("creds: %d\n%s", code, out)
	}
	conf := filepath.Join(fleetDir, "tls.conf")
	tlsBlock := fmt.Sprintf("include server.conf\ntls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\n", srvCert, srvKey, pk.caFile)
	if err := os.WriteFile(conf, []byte(tlsBlock), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "nats-server", exec.Command(filepath.Join(bin, "nats-server"), "-c", conf))
	waitPort(t, srv, addr)

	url := "tls://" + addr
	tlsArgs := []string{"--nats", url, "--tls-ca", pk.caFile, "--tls-cert", cliCert, "--tls-key", cliKey}
	admin := append(append([]string{}, tlsArgs...), "--nats-nkey", filepath.Join(fleetDir, "admin.nk"))
	for _, args := range [][]string{{"init", "--replicas", "1"}, {"seal", "web-1"}} {
		if code, out := run(t, exec.Command(ctl, append(admin, args...)...)); code != 0 {
			t.Fatalf("driftctl %v: %d\n%s", args, code, out)
		}
	}
	ready := filepath.Join(dir, "responder.ready")
	resp := start(t, "driftresponder", exec.Command(filepath.Join(bin, "driftresponder"),
		append(append([]string{}, tlsArgs...), "--nats-nkey", filepath.Join(fleetDir, "responder.nk"), "--ready-file", ready)...))
	waitFile(t, resp, ready)

	// The sensor's side: its transport with the same options.
	sp, _, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	opts := transport.Options{URL: url, CAFile: pk.caFile, CertFile: cliCert, KeyFile: cliKey, NKeySeedFile: filepath.Join(fleetDir, "hosts", "web-1.nk")}
	p, err := publish.New(context.Background(), opts, "web-1", sp, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	applied := make(chan event.State, 8)
	p.WatchState(context.Background(), func(s event.State) { applied <- s })
	select {
	case s := <-applied:
		if s != event.StateSealed {
			t.Fatalf("the sensor got %q, want sealed", s)
		}
	case <-time.After(testenv.WaitBound):
		t.Fatal("the sensor never got its state over TLS")
	}
	st := event.StateSealed
	p.StartHeartbeat(100*time.Millisecond, func() event.Heartbeat { return event.Heartbeat{Backend: "test", State: st} })
	if err := p.Publish(&event.Event{Kind: event.KindFile, Action: "unlink", Backend: "test", File: &event.File{Path: "/etc/tls-drift"}}); err != nil {
		t.Fatal(err)
	}
	if c := p.Counters(); c.Published != 1 || c.Transport != event.TransportJetStream {
		t.Fatalf("publisher over TLS: %+v", c)
	}
	testenv.Eventually(t, "driftctl status over TLS showing web-1 sealed and beating", func() bool {
		h, ok := hostIn(status(t, bin, admin...), "web-1")
		return ok && h.State == event.StateSealed && h.Heartbeat != nil && h.Heartbeat.Transport == "jetstream" && h.Mismatch == ""
	})
	if _, out := run(t, exec.Command(ctl, append(admin, "replay", "--since", "1h", "--json")...)); !strings.Contains(out, "/etc/tls-drift") {
		t.Fatalf("the finding sent over TLS is not in the stream:\n%s", out)
	}

	// No client certificate: the server refuses the connection in the handshake.
	code, out := run(t, exec.Command(ctl, "--nats", url, "--tls-ca", pk.caFile, "--nats-nkey", filepath.Join(fleetDir, "admin.nk"), "status"))
	if code != 1 || !strings.Contains(out, "tls") {
		t.Fatalf("driftctl without a client certificate: exit %d\n%s", code, out)
	}
	if resp.exited() {
		t.Fatalf("driftresponder exited: %v\n%s", resp.err, resp.output())
	}
}
