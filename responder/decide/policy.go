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
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Action is what the responder does about an incident, in rising severity.
type Action string

// Actions.
const (
	ActAlert   Action = "alert"   // record and notify, touch nothing
	ActCordon  Action = "cordon"  // cut the network but the management channel
	ActDestroy Action = "destroy" // cordon, then destroy the host
)

func (a Action) rank() int {
	switch a {
	case ActAlert:
		return 1
	case ActCordon:
		return 2
	case ActDestroy:
		return 3
	}
	return 0
}

// ParseAction reads an action name.
func ParseAction(s string) (Action, error) {
	a := Action(s)
	if a.rank() == 0 {
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

// ParsePolicy reads a YAML policy; errors name the file, the line and the
// reason, and unknown keys are errors.
func ParsePolicy(name string, data []byte) (*Policy, error) {
	p := &Policy{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// "line 3: field x not found in type decide.Policy" -> "name:3: field x not found"
			msgs := make([]string, len(te.Errors))
			for i, e := range te.Errors {
				e = strings.Replace(e, " in type decide.Policy", "", 1)
				e = strings.Replace(e, " in type decide.Rule", "", 1)
				if rest, ok := strings.CutPrefix(e, "line "); ok {
					if n, msg, ok := strings.Cut(rest, ": "); ok {
						e = n + ": " + msg
					}
				}
				msgs[i] = name + ":" + e
			}
			return nil, errors.New(strings.Join(msgs, "\n"))
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	line := func(key string, idx int) int { return findLine(&root, key, idx) }
	if p.Default == "" {
		p.Default = ActAlert
	}
	if p.DeadMan == "" {
		p.DeadMan = ActCordon
	}
	if p.SensorRestart == "" {
		p.SensorRestart = ActAlert
	}
	if _, err := ParseAction(string(p.Default)); err != nil {
		return nil, fmt.Errorf("%s:%d: default: %v", name, line("default", -1), err)
	}
	if _, err := ParseAction(string(p.DeadMan)); err != nil {
		return nil, fmt.Errorf("%s:%d: dead_man: %v", name, line("dead_man", -1), err)
	}
	for g, globs := range p.Groups {
		for _, gl := range globs {
			if _, err := path.Match(gl, ""); err != nil {
				return nil, fmt.Errorf("%s:%d: group %s: bad pattern %q: %v", name, line("groups", -1), g, gl, err)
			}
		}
	}
	for i, r := range p.Rules {
		if err := p.checkRule(r); err != nil {
			return nil, fmt.Errorf("%s:%d: rule %d: %v", name, line("rules", i), i+1, err)
		}
	}
	return p, nil
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

// findLine finds the line of a top-level key, or of its idx-th sequence item.
func findLine(root *yaml.Node, key string, idx int) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			continue
		}
		v := m.Content[i+1]
		if idx >= 0 && idx < len(v.Content) {
			return v.Content[idx].Line
		}
		return m.Content[i].Line
	}
	return 0
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
