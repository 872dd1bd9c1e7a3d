package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/nats-io/nats.go"

	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// A finding the policy alerts on reaches a syslog receiver given with
// -alert-to as an RFC 5424 message: severity alert, MSGID alert, HOSTNAME
// the host, the audit record as MSG naming the finding.
func TestAlertToSyslog(t *testing.T) {
	s := natsServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	msgs := make(chan *rfc5424.SyslogMessage, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go octetcounting.NewParser(syslog.WithListener(func(res *syslog.Result) {
				if res.Error != nil {
					t.Errorf("receiver: not RFC 5424: %v", res.Error)
					return
				}
				msgs <- res.Message.(*rfc5424.SyslogMessage)
			})).Parse(c)
		}
	}()

	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", s.ClientURL(), "-replica", "r1", "-ready-file", ready, "-heartbeat-interval", "0",
			"-alert-to", "syslog+tcp://" + l.Addr().String()})
	}()
	testenv.Eventually(t, "the responder is ready", func() bool { _, err := os.Stat(ready); return err == nil })

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	data, _ := json.Marshal(event.Event{Schema: event.Schema, ID: "e1", Host: "h1", Seq: 1, Time: time.Now(), Kind: event.KindExec, Action: "exec", Exec: &event.Exec{Path: "/tmp/x"}})
	if err := nc.Publish(event.Subject("h1", event.KindExec), data); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(testenv.WaitBound)
	for {
		select {
		case m := <-msgs:
			var rec decide.Record
			if err := json.Unmarshal([]byte(*m.Message), &rec); err != nil {
				t.Fatalf("MSG is not an audit record: %v: %s", err, *m.Message)
			}
			if rec.Stage != decide.StageAlert {
				continue
			}
			if *m.Severity != 1 || *m.MsgID != "alert" || *m.Hostname != "h1" || rec.Host != "h1" || len(rec.Events) != 1 || rec.Events[0] != "e1" {
				t.Errorf("alert message: severity %d msgid %s host %s record %+v", *m.Severity, *m.MsgID, *m.Hostname, rec)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			return
		case <-timeout:
			t.Fatal("no alert reached the syslog receiver")
		}
	}
}
