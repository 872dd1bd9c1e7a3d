package flagcheck

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// TestChecks: each check lets its bounds through (both ends included) and
// refuses what lies outside with the exact text the commands print: the
// flag, the value given, and what would be right. The expected texts are
// literals: they are what users read, not what the code happens to build.
func TestChecks(t *testing.T) {
	const s, m = time.Second, time.Minute
	cases := []struct {
		name string
		err  error
		want string // "" when the value passes
	}{
		{"duration at min", Duration("wait", s, s, m, false), ""},
		{"duration at max", Duration("wait", m, s, m, false), ""},
		{"duration under min", Duration("wait", s-1, s, m, false), "--wait 999.999999ms: want from 1s to 1m0s"},
		{"duration over max", Duration("wait", m+1, s, m, false), "--wait 1m0.000000001s: want from 1s to 1m0s"},
		{"duration 0 when 0 is off", Duration("window", 0, s, m, true), ""},
		{"duration 0 when 0 is not allowed", Duration("window", 0, s, m, false), "--window 0s: want from 1s to 1m0s"},
		{"negative duration when 0 is off", Duration("window", -s, s, m, true), "--window -1s: want from 1s to 1m0s, or 0 for none"},

		{"int at min", Int("missed-beats", 1, 1, 10), ""},
		{"int at max", Int("missed-beats", 10, 1, 10), ""},
		{"int under min", Int("missed-beats", 0, 1, 10), "--missed-beats 0: want from 1 to 10"},
		{"int over max", Int("missed-beats", 11, 1, 10), "--missed-beats 11: want from 1 to 10"},

		{"float at min", Float("max-percent", 0, 0, 100), ""},
		{"float at max", Float("max-percent", 100, 0, 100), ""},
		{"float under min", Float("max-percent", -0.5, 0, 100), "--max-percent -0.5: want from 0 to 100"},
		{"float over max", Float("max-percent", 100.25, 0, 100), "--max-percent 100.25: want from 0 to 100"},
		{"float NaN", Float("max-percent", math.NaN(), 0, 100), "--max-percent NaN: want from 0 to 100"},
		{"float +Inf", Float("max-percent", math.Inf(1), 0, 100), "--max-percent +Inf: want from 0 to 100"},

		{"port 0 (any free port)", Port("embedded-port", 0), ""},
		{"port 65535", Port("embedded-port", 65535), ""},
		{"port 65536", Port("embedded-port", 65536), "--embedded-port 65536: want a TCP port, 1-65535, or 0 for any free port"},
		{"port -1", Port("embedded-port", -1), "--embedded-port -1: want a TCP port, 1-65535, or 0 for any free port"},

		{"one URL", URLs("nats", "nats://127.0.0.1:4222"), ""},
		{"URL list", URLs("nats", "nats://a:4222, tls://b:4443"), ""},
		{"no URL", URLs("nats", ""), `--nats "": no URL (want e.g. nats://127.0.0.1:4222)`},
		{"URL with a bad scheme", URLs("nats", "http://a:4222"), `--nats "http://a:4222": "http://a:4222": scheme "http": want one of nats, tls, ws, wss`},
		{"empty URL in a list", URLs("nats", "nats://a:4222,"), `--nats "nats://a:4222,": "": empty URL in the list (want nats://host:port[,nats://host:port...])`},

		{"listen address off", ListenAddr("metrics-addr", ""), ""},
		{"listen address", ListenAddr("metrics-addr", "127.0.0.1:9464"), ""},
		{"listen address, any port", ListenAddr("metrics-addr", ":0"), ""},
		{"listen address without port", ListenAddr("metrics-addr", "127.0.0.1"),
			`--metrics-addr "127.0.0.1": want host:port, e.g. 127.0.0.1:9464 (address 127.0.0.1: missing port in address)`},
		{"listen port past 65535", ListenAddr("metrics-addr", "127.0.0.1:65536"),
			`--metrics-addr "127.0.0.1:65536": want host:port, e.g. 127.0.0.1:9464 (port 65536 out of range)`},
		{"negative listen port", ListenAddr("metrics-addr", "127.0.0.1:-1"),
			`--metrics-addr "127.0.0.1:-1": want host:port, e.g. 127.0.0.1:9464 (port -1 out of range)`},
		{"listen port not a number", ListenAddr("metrics-addr", "127.0.0.1:http"),
			`--metrics-addr "127.0.0.1:http": want host:port, e.g. 127.0.0.1:9464 (strconv.Atoi: parsing "http": invalid syntax)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.want == "" {
				if c.err != nil {
					t.Fatalf("refused: %v", c.err)
				}
				return
			}
			if c.err == nil {
				t.Fatalf("passed, want refusal %q", c.want)
			}
			if got := c.err.Error(); got != c.want {
				t.Errorf("refusal\n %q, want\n %q", got, c.want)
			}
			if !Is(c.err) {
				t.Errorf("Is(%v) = false for a refused flag value", c.err)
			}
		})
	}
}

// TestIs: Is finds a refused flag value through wrapping (the commands wrap
// errors on the way up and pick exit status 2 with Is) and only that.
func TestIs(t *testing.T) {
	refused := Int("max-hosts", -1, 0, 10)
	if !Is(fmt.Errorf("responder: %w", refused)) {
		t.Error("Is misses a wrapped refusal")
	}
	for _, err := range []error{nil, errors.New("--max-hosts -1: want from 0 to 10")} {
		if Is(err) {
			t.Errorf("Is(%v) = true: only a refused flag value is one", err)
		}
	}
}

// TestFirst: the first refusal in the order given wins, so a command names
// the first bad flag of its list; no refusal gives nil.
func TestFirst(t *testing.T) {
	a := Int("a", 0, 1, 2)
	b := Int("b", 0, 1, 2)
	if got := First(nil, a, nil, b); got != a {
		t.Errorf("First = %v, want the first refusal %v", got, a)
	}
	if got := First(nil, nil); got != nil {
		t.Errorf("First of no refusal = %v, want nil", got)
	}
	if got := First(); got != nil {
		t.Errorf("First() = %v, want nil", got)
	}
}
