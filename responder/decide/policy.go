// Package decide is the responder's brain: it reads findings and heartbeats
// from NATS, groups findings into incidents per host, decides by policy
// (alert, cordon, destroy), guards against mass action, watches for sensors
// that go silent, acts through actuators, verifies cordons with a probe,
// records cordoned and destroyed hosts in the control plane's state bucket
// (closing a host's incident when driftctl uncordon moves it back), and
// appends every step to the audit stream.
package decide

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Action is what the responder does about an incident, in rising severity
// (the audit record's type).
type Action = event.Action

// Actions.
const (
	ActAlert   Action = "alert"   // record and notify, touch nothing
	ActCordon  Action = "cordon"  // cut the network but the management channel
	ActDestroy Action = "destroy" // cordon, then destroy the host
)

// actions are every action, in rising severity: rank, ParseAction and the
// metrics (a series for each from the start) read them here.
var actions = []Action{ActAlert, ActCordon, ActDestroy}

// rank is a's severity, 0 for no action.
func rank(a Action) int { return slices.Index(actions, a) + 1 }

// ParseAction reads an action name.
func ParseAction(s string) (Action, error) {
	a := Action(s)
	if rank(a) == 0 {
		return "", fmt.Errorf("unknown action %q (want alert, cordon, destroy)", s)
	}
	return a, nil
}

// Rule matches findings; the first matching rule of a policy decides. Empty
// fields match everything.
type Rule struct {
	Name       string     `yaml:"name"`
	Kind       event.Kind `yaml:"kind"`        // file, exec, net, sensor
	PathPrefix string     `yaml:"path_prefix"` // of the file or executable
	Group      string     `yaml:"group"`       // a host group of the policy
	Action     Action     `yaml:"action"`
}

// Policy maps findings to actions.
type Policy struct {
	Default Action `yaml:"default"`  // when no rule matches; alert if empty
	DeadMan Action `yaml:"dead_man"` // for a silent or blinded sensor; cordon if empty
	// SensorRestart is for a sensor that came back as a new run (restart,
	// reboot); alert if empty.
	SensorRestart Action              `yaml:"sensor_restart"`
	Groups        map[string][]string `yaml:"groups"` // group -> host name globs (path.Match)
	Rules         []Rule              `yaml:"rules"`
}

// DefaultPolicy alerts on everything and cordons hosts whose sensor fails.
func DefaultPolicy() *Policy {
	return &Policy{Default: ActAlert, DeadMan: ActCordon, SensorRestart: ActAlert}
}

// ParsePolicy reads a YAML policy (see example.yaml). Errors name the
// file, the line and column, and the reason; unknown keys are errors.
func ParsePolicy(name string, data []byte) (*Policy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		// yaml.v3 gives the line of a syntax error, not the column.
		msg, line := strings.TrimPrefix(err.Error(), "yaml: "), "1"
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, m, ok := strings.Cut(rest, ": "); ok {
				line, msg = n, m
			}
		}
		return nil, fmt.Errorf("%s:%s:1: invalid YAML: %s (check indentation, quoting and brackets)", name, line, msg)
	}
	p := &Policy{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("%s:1:1: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		// "line 3: field x not found in type decide.Policy" -> "name:3:5: unknown key x (want ...)"
		cols := columns(&root)
		msgs := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			line, col := 1, 1
			if rest, ok := strings.CutPrefix(e, "line "); ok {
				if n, msg, ok := strings.Cut(rest, ": "); ok {
					fmt.Sscan(n, &line)
					col = max(cols[line], 1)
					e = msg
				}
			}
			if f, ok := strings.CutPrefix(e, "field "); ok {
				if key, typ, ok := strings.Cut(f, " not found in type "); ok {
					want := "default, dead_man, sensor_restart, groups, rules"
					if typ == "decide.Rule" {
						want = "name, kind, path_prefix, group, action"
					}
					e = fmt.Sprintf("unknown key %q (want %s)", key, want)
				}
			}
			msgs[i] = fmt.Sprintf("%s:%d:%d: %s", name, line, col, e)
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	at := func(path ...any) string {
		l, c := position(&root, path...)
		return fmt.Sprintf("%s:%d:%d", name, l, c)
	}
	for _, f := range []struct {
		key string
		a   *Action
		def Action
	}{{"default", &p.Default, ActAlert}, {"dead_man", &p.DeadMan, ActCordon}, {"sensor_restart", &p.SensorRestart, ActAlert}} {
		if *f.a == "" {
			*f.a = f.def
		} else if _, err := ParseAction(string(*f.a)); err != nil {
			return nil, fmt.Errorf("%s: %s: %v", at(f.key), f.key, err)
		}
	}
	for g, globs := range p.Groups {
		for i, gl := range globs {
			if _, err := path.Match(gl, ""); err != nil {
				return nil, fmt.Errorf("%s: group %s: bad pattern %q: %v (want a host name glob such as web-*)", at("groups", g, i), g, gl, err)
			}
		}
	}
	for i, r := range p.Rules {
		if err := p.checkRule(r); err != nil {
			return nil, fmt.Errorf("%s: rule %d: %v", at("rules", i, ruleField(err)), i+1, err)
		}
	}
	return p, nil
}

// ruleField names the rule key an error of checkRule is about.
func ruleField(err error) string {
	msg := err.Error()
	for _, f := range []string{"kind", "path_prefix", "group"} {
		if strings.Contains(msg, f+" ") {
			return f
		}
	}
	if strings.Contains(msg, "no action") {
		return ""
	}
	return "action"
}

// position finds the line and column of the node at path (mapping keys
// and sequence indexes) under the document root; as deep as it exists.
func position(root *yaml.Node, path ...any) (int, int) {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line, col := max(n.Line, 1), max(n.Column, 1)
	for _, step := range path {
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			break
		}
		n, line, col = next, next.Line, next.Column
	}
	return line, col
}

// columns maps each line to the column of the first node on it.
func columns(root *yaml.Node) map[int]int {
	out := map[int]int{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if c, ok := out[n.Line]; !ok || n.Column < c {
			out[n.Line] = n.Column
		}
		for _, k := range n.Content {
			walk(k)
		}
	}
	walk(root)
	return out
}

func (p *Policy) checkRule(r Rule) error {
	if r.Action == "" {
		return fmt.Errorf("no action (want alert, cordon, destroy)")
	}
	if _, err := ParseAction(string(r.Action)); err != nil {
		return err
	}
	switch r.Kind {
	case "", event.KindFile, event.KindExec, event.KindNet, event.KindSensor:
	default:
		return fmt.Errorf("unknown kind %q (want file, exec, net, sensor)", r.Kind)
	}
	if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
		return fmt.Errorf("path_prefix %q is not absolute", r.PathPrefix)
	}
	if r.Group != "" {
		if _, ok := p.Groups[r.Group]; !ok {
			return fmt.Errorf("unknown group %q (define it under groups)", r.Group)
		}
	}
	return nil
}

// ParseRuleFlag reads a rule from a flag: comma-separated key=value pairs
// of kind, path, group, action and name, e.g. "kind=file,path=/etc,action=cordon".
func ParseRuleFlag(s string) (Rule, error) {
	var r Rule
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return r, fmt.Errorf("rule %q: %q is not key=value", s, kv)
		}
		switch k {
		case "kind":
			r.Kind = event.Kind(v)
		case "path", "path_prefix":
			r.PathPrefix = v
		case "group":
			r.Group = v
		case "action":
			r.Action = Action(v)
		case "name":
			r.Name = v
		default:
			return r, fmt.Errorf("rule %q: unknown key %q (want kind, path, group, action, name)", s, k)
		}
	}
	return r, nil
}

// Add appends a rule after checking it.
func (p *Policy) Add(r Rule) error {
	if err := p.checkRule(r); err != nil {
		return err
	}
	p.Rules = append(p.Rules, r)
	return nil
}

// InGroup reports whether host belongs to group.
func (p *Policy) InGroup(host, group string) bool {
	for _, g := range p.Groups[group] {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

// Decide returns the action for a finding and the name of the rule that chose it.
func (p *Policy) Decide(ev *event.Event) (Action, string) {
	if ev.Kind == event.KindSensor {
		// A blind or tampered sensor is the dead man's switch's business
		// unless a rule says otherwise.
		for i, r := range p.Rules {
			if r.Kind == event.KindSensor && p.matches(r, ev) {
				return r.Action, ruleName(r, i)
			}
		}
		return p.DeadMan, "dead_man"
	}
	for i, r := range p.Rules {
		if p.matches(r, ev) {
			return r.Action, ruleName(r, i)
		}
	}
	return p.Default, "default"
}

func ruleName(r Rule, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("rule %d", i+1)
}

func (p *Policy) matches(r Rule, ev *event.Event) bool {
	if r.Kind != "" && r.Kind != ev.Kind {
		return false
	}
	if r.Group != "" && !p.InGroup(ev.Host, r.Group) {
		return false
	}
	if r.PathPrefix != "" {
		ok := false
		for _, pth := range eventPaths(ev) {
			if underPrefix(pth, r.PathPrefix) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// underPrefix matches whole components: /etc matches /etc and /etc/x, not /etcx.
func underPrefix(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func eventPaths(ev *event.Event) []string {
	var out []string
	if ev.File != nil {
		out = append(out, ev.File.Path)
		if ev.File.NewPath != "" {
			out = append(out, ev.File.NewPath)
		}
	}
	if ev.Exec != nil && ev.Exec.Path != "" {
		out = append(out, ev.Exec.Path)
	}
	return out
}
