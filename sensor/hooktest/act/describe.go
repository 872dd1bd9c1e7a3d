package act

import (
	"fmt"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Describe is a finding on one line, for the messages of tests and drills that
// compare what an action caused with what it should have.
func Describe(ev *event.Event) string {
	s := fmt.Sprintf("%s/%s", ev.Kind, ev.Action)
	if ev.Denied {
		s += " denied"
	}
	if ev.Process != nil {
		s += fmt.Sprintf(" pid=%d tid=%d", ev.Process.PID, ev.Process.TID)
	}
	switch {
	case ev.File != nil:
		s += " " + ev.File.Path
		if ev.File.Unresolved {
			s += " (unresolved)"
		}
		if ev.File.NewPath != "" {
			s += " -> " + ev.File.NewPath
		}
		if ev.File.Target != "" {
			s += " target=" + ev.File.Target
		}
		s += fmt.Sprintf(" ret=%d", ev.File.Ret)
	case ev.Exec != nil:
		s += fmt.Sprintf(" %s %v arg=%#x ret=%d", ev.Exec.Path, ev.Exec.Reasons, ev.Exec.Arg, ev.Exec.Ret)
		if ev.Process != nil && len(ev.Process.Argv) > 0 {
			s += fmt.Sprintf(" argv=%q", ev.Process.Argv)
		}
	case ev.Net != nil:
		s += fmt.Sprintf(" port=%d", ev.Net.Port)
	case ev.Health != nil:
		s += " " + ev.Health.Detail
	}
	return s
}
