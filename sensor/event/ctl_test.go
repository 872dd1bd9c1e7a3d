package event

import (
	"encoding/json"
	"testing"
)

func FuzzDecodeCtlCommand(f *testing.F) {
	f.Add([]byte(`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"x1"}`))
	f.Add([]byte(`{"schema":"driftsensor.ctl/v1","cmd":"seal","id":"a","id":"b"}`))
	f.Add([]byte(`{"schema":"driftsensor.ctl/v1","cmd":"\u0073eal","id":"x"}`))
	f.Add([]byte(`{"schema":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCtlCommand(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("refused %q with an empty error", b)
			}
			return
		}
		if c.check() != nil || len(b) > MaxCtlCommand {
			t.Fatalf("accepted %q (%d bytes, max %d) as %+v", b, len(b), MaxCtlCommand, c)
		}
		// What we accept, encoding/json reads the same way.
		var std CtlCommand
		if err := json.Unmarshal(b, &std); err != nil || std != c {
			t.Fatalf("encoding/json reads %q as %+v (%v), we read %+v", b, std, err, c)
		}
		if c2, err := DecodeCtlCommand(c.Encode()); err != nil || c2 != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, c2, err)
		}
	})
}

// What the responder and driftctl send is what the sensor accepts, and a
// reply reads back as sent.
func TestCtlRoundTrip(t *testing.T) {
	for _, cmd := range []string{CmdPing, CmdSeal, CmdUnseal, CmdCordon, CmdUncordon} {
		c, err := NewCtlCommand(cmd, "inc-1:a.b_c")
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if got, err := DecodeCtlCommand(c.Encode()); err != nil || got != c {
			t.Fatalf("%s: decoded %+v, %v", cmd, got, err)
		}
	}
	if _, err := NewCtlCommand("reboot", "1"); err == nil {
		t.Fatal("an unknown command was built")
	}
	if _, err := NewCtlCommand(CmdPing, "a b"); err == nil {
		t.Fatal("an id with a space was built")
	}
	r := CtlReply{Schema: CtlSchema, ID: "x", OK: false, Error: "no gate"}
	if got, err := DecodeCtlReply(r.Encode()); err != nil || got != r {
		t.Fatalf("reply round trip: %+v, %v", got, err)
	}
	if _, err := DecodeCtlReply([]byte(`{"ok":true}`)); err == nil {
		t.Fatal("a reply without the schema was taken")
	}
}

// evidence and drill carry an argument; the other commands take none, and
// an evidence path must be absolute and clean, as the sensor reported it.
func TestCtlArg(t *testing.T) {
	for _, ok := range [][2]string{{CmdEvidence, "/etc/passwd"}, {CmdDrill, "file,exec"}} {
		c, err := NewCtlCommandArg(ok[0], "x", ok[1])
		if err != nil {
			t.Fatalf("%s %s: %v", ok[0], ok[1], err)
		}
		if got, err := DecodeCtlCommand(c.Encode()); err != nil || got != c {
			t.Fatalf("%s: decoded %+v, %v", ok[0], got, err)
		}
	}
	for _, bad := range []struct{ cmd, arg, want string }{
		{CmdPing, "x", "ctl message: ping takes no arg"},
		{CmdEvidence, "", "ctl message: evidence needs an arg"},
		{CmdEvidence, "etc/passwd", `ctl message: evidence path "etc/passwd": want a clean absolute path, as the sensor reported it`},
		{CmdEvidence, "/etc/../root/.ssh/id_rsa", `ctl message: evidence path "/etc/../root/.ssh/id_rsa": want a clean absolute path, as the sensor reported it`},
		{CmdDrill, "", "ctl message: drill needs an arg"},
	} {
		if _, err := NewCtlCommandArg(bad.cmd, "x", bad.arg); err == nil || err.Error() != bad.want {
			t.Errorf("%s %q: %v, want %q", bad.cmd, bad.arg, err, bad.want)
		}
	}
}
