package decide

import (
	"strings"
	"testing"

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
		{"rules:\n  - kind: file\n    action: cordn\n", `policy.yaml:2: rule 1: unknown action "cordn" (want alert, cordon, destroy)`},
		{"rules:\n  - kind: file\n    action: alert\n  - kind: files\n    action: alert\n", `policy.yaml:4: rule 2: unknown kind "files"`},
		{"rules:\n  - group: web\n    action: alert\n", `policy.yaml:2: rule 1: unknown group "web"`},
		{"rules:\n  - path_prefix: etc\n    action: alert\n", `path_prefix "etc" is not absolute`},
		{"rules:\n  - kind: file\n", `no action`},
		{"dead_man: nuke\n", `policy.yaml:1: dead_man: unknown action "nuke"`},
		{"rulez: []\n", `policy.yaml:1: field rulez not found`},
	} {
		_, err := ParsePolicy("policy.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("policy %q: got %v, want %q", tc.in, err, tc.want)
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
