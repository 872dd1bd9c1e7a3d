package decide

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

const examplePolicy = `# driftresponder policy
default: alert
dead_man: cordon
groups:
  web: ["web-*"]
rules:
  - name: etc
    kind: file
    path_prefix: /etc
    action: cordon
  - name: web-exec
    kind: exec
    group: web
    action: destroy
  - kind: net
    action: alert
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("policy.yaml", []byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		kind event.Kind
		path string
		want Action
		rule string
	}{
		{"db-1", event.KindFile, "/etc/passwd", ActCordon, "etc"},
		{"db-1", event.KindFile, "/etc", ActCordon, "etc"},
		{"db-1", event.KindFile, "/etcetera/x", ActAlert, "default"},
		{"db-1", event.KindFile, "/var/lib/x", ActAlert, "default"},
		{"web-3", event.KindExec, "/tmp/x", ActDestroy, "web-exec"},
		{"db-1", event.KindExec, "/tmp/x", ActAlert, "default"},
		{"db-1", event.KindNet, "", ActAlert, "rule 3"},
		{"db-1", event.KindSensor, "", ActCordon, "dead_man"},
	} {
		ev := &event.Event{Host: tc.host, Kind: tc.kind}
		switch tc.kind {
		case event.KindFile:
			ev.File = &event.File{Path: tc.path}
		case event.KindExec:
			ev.Exec = &event.Exec{Path: tc.path}
		}
		if got, rule := p.Decide(ev); got != tc.want || rule != tc.rule {
			t.Errorf("%s %s %s: got %s by %q, want %s by %q", tc.host, tc.kind, tc.path, got, rule, tc.want, tc.rule)
		}
	}
	// A rename into /etc is caught by its new path.
	ev := &event.Event{Host: "db-1", Kind: event.KindFile, File: &event.File{Path: "/tmp/x", NewPath: "/etc/cron.d/x"}}
	if got, _ := p.Decide(ev); got != ActCordon {
		t.Errorf("rename into /etc: %s, want cordon", got)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rules:\n  - kind: file\n    action: cordn\n", `policy.yaml:3:13: rule 1: unknown action "cordn" (want alert, cordon, destroy)`},
		{"rules:\n  - kind: file\n    action: alert\n  - kind: files\n    action: alert\n", `policy.yaml:4:11: rule 2: unknown kind "files" (want file, exec, net, sensor)`},
		{"rules:\n  - group: web\n    action: alert\n", `policy.yaml:2:12: rule 1: unknown group "web" (define it under groups)`},
		{"rules:\n  - path_prefix: etc\n    action: alert\n", `policy.yaml:2:18: rule 1: path_prefix "etc" is not absolute`},
		{"rules:\n  - kind: file\n", `policy.yaml:2:5: rule 1: no action (want alert, cordon, destroy)`},
		{"dead_man: nuke\n", `policy.yaml:1:11: dead_man: unknown action "nuke" (want alert, cordon, destroy)`},
		{"sensor_restart: reboot\n", `policy.yaml:1:17: sensor_restart: unknown action "reboot" (want alert, cordon, destroy)`},
		{"default: alert\n  rulez: []\n", `policy.yaml:2:1: invalid YAML: mapping values are not allowed in this context (check indentation, quoting and brackets)`},
		{"default: alert\nrulez: []\n", `policy.yaml:2:1: unknown key "rulez" (want default, dead_man, sensor_restart, groups, rules)`},
		{"rules:\n  - kind: file\n    acton: alert\n", `policy.yaml:3:5: unknown key "acton" (want name, kind, path_prefix, group, action)`},
		{"groups:\n  web: [\"web-[\"]\n", `policy.yaml:2:9: group web: bad pattern "web-["`},
	} {
		_, err := ParsePolicy("policy.yaml", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("policy %q:\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

func TestRuleFlag(t *testing.T) {
	r, err := ParseRuleFlag("kind=file,path=/etc,group=web,action=cordon,name=x")
	if err != nil || r.Kind != event.KindFile || r.PathPrefix != "/etc" || r.Group != "web" || r.Action != ActCordon || r.Name != "x" {
		t.Errorf("got %+v, %v", r, err)
	}
	if _, err := ParseRuleFlag("kind=file,colour=red"); err == nil {
		t.Error("unknown key accepted")
	}
	p := DefaultPolicy()
	if err := p.Add(Rule{Kind: event.KindFile, Action: "zap"}); err == nil {
		t.Error("bad action accepted")
	}
}

// TestExamplePolicyActionsAreTaken: the actions example.yaml sets are the
// ones the responder takes, through its actuators, for each kind.
func TestExamplePolicyActionsAreTaken(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy("example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	startResponder(t, url, Config{Policy: p, Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec}})
	cases := []struct {
		host string
		kind event.Kind
		path string
		want Action
		rule string
	}{
		{"web-1", event.KindExec, "/tmp/x", ActDestroy, "web-exec"},
		{"db-1", event.KindExec, "/tmp/x", ActCordon, "exec"},
		{"app-1", event.KindFile, "/etc/passwd", ActCordon, "etc"},
		{"app-2", event.KindFile, "/var/lib/x", ActAlert, "files"},
		{"app-3", event.KindNet, "", ActCordon, "net"},
		{"app-4", event.KindSensor, "", ActCordon, "dead_man"},
	}
	for _, c := range cases {
		newSensor(t, nc, c.host).finding(c.kind, c.path)
	}
	var decided map[string]Record
	eventually(t, "every finding decided", func() bool {
		decided = map[string]Record{}
		for _, r := range streamRecords(t, nc) {
			if r.Stage == StageDecision {
				decided[r.Host] = r
			}
		}
		return len(decided) == len(cases)
	})
	wantCalls := map[string]int{}
	for _, c := range cases {
		if d := decided[c.host]; d.Action != c.want || d.Rule != c.rule {
			t.Errorf("%s %s %s: decided %s by %q, want %s by %q", c.host, c.kind, c.path, d.Action, d.Rule, c.want, c.rule)
		}
		switch c.want {
		case ActCordon:
			wantCalls[c.host] = 1
		case ActDestroy:
			wantCalls[c.host] = 2 // cordon, then destroy
		}
	}
	total := 0
	for _, n := range wantCalls {
		total += n
	}
	eventually(t, "the actions", func() bool { return rec.total() == total })
	if got := rec.hosts(); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("actuator calls %v, want %v", got, wantCalls)
	}
	if p.SensorRestart != ActAlert || p.Default != ActAlert {
		t.Errorf("example sets sensor_restart %s, default %s; this test expects alert for both", p.SensorRestart, p.Default)
	}
}
