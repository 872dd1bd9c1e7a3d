package actuator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"text/template"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Command runs an external program for an action, e.g. a cloud CLI or a
// hypervisor tool. Each argument is a text/template over Target ({{.Host}},
// {{.Incident}}, {{.Action}}); the program runs directly, without a shell,
// so values cannot inject commands.
type Command struct {
	name string
	args []*template.Template
	raw  []string
}

// NewCommand parses argv, whose first element is the program.
func NewCommand(argv []string) (*Command, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("command hook: empty command")
	}
	c := &Command{raw: argv}
	for i, a := range argv {
		tp, err := template.New(fmt.Sprintf("arg%d", i)).Option("missingkey=error").Parse(a)
		if err != nil {
			return nil, fmt.Errorf("command hook: argument %d %q: %w", i, a, err)
		}
		c.args = append(c.args, tp)
	}
	// A template that parses can still name a field Target lacks: render it
	// once now, so the mistake stops the responder at start, not an incident.
	if _, err := c.Argv(Target{Host: "example-host", Incident: "example", Action: "destroy"}); err != nil {
		return nil, fmt.Errorf("%w (fields: .Host, .Incident, .Action, .Reason, .Events, .Time)", err)
	}
	return c, nil
}

// Name identifies the actuator in the audit trail.
func (c *Command) Name() string { return "command:" + c.raw[0] }

// Argv renders the command line for t.
func (c *Command) Argv(t Target) ([]string, error) {
	if err := event.ValidHost(t.Host); err != nil {
		return nil, fmt.Errorf("command hook: %w", err)
	}
	out := make([]string, len(c.args))
	for i, tp := range c.args {
		var b strings.Builder
		if err := tp.Execute(&b, t); err != nil {
			return nil, fmt.Errorf("command hook: argument %d: %w", i, err)
		}
		out[i] = b.String()
	}
	return out, nil
}

// Run renders and runs the command; a non-zero exit is an error carrying the
// end of its output.
func (c *Command) Run(ctx context.Context, t Target) error {
	argv, err := c.Argv(t)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.Bytes()
		if len(tail) > 512 {
			tail = tail[len(tail)-512:]
		}
		return fmt.Errorf("command hook %q: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(tail))
	}
	return nil
}

// Destroy runs the command.
func (c *Command) Destroy(ctx context.Context, t Target) error { return c.Run(ctx, t) }

// Cordon runs the command.
func (c *Command) Cordon(ctx context.Context, t Target) error { return c.Run(ctx, t) }
