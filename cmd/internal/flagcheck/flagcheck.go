// Package flagcheck checks command-line values before a command starts
// anything: each refusal names the flag, the value given and what would be
// right, and the commands exit with status 2 on it.
package flagcheck

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Error is a refused flag value.
type Error struct {
	Flag  string
	Value string
	Want  string
}

func (e *Error) Error() string { return fmt.Sprintf("--%s %s: %s", e.Flag, e.Value, e.Want) }

// Is reports whether err is (or wraps) a refused flag value.
func Is(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Duration refuses v outside [min, max]; zeroOK also lets 0 through (off).
func Duration(name string, v, min, max time.Duration, zeroOK bool) error {
	if (v == 0 && zeroOK) || (v >= min && v <= max) {
		return nil
	}
	want := fmt.Sprintf("want from %v to %v", min, max)
	if zeroOK {
		want += ", or 0 for none"
	}
	return &Error{name, v.String(), want}
}

// Int refuses v outside [min, max].
func Int(name string, v, min, max int) error {
	if v >= min && v <= max {
		return nil
	}
	return &Error{name, strconv.Itoa(v), fmt.Sprintf("want from %d to %d", min, max)}
}

// Float refuses v outside [min, max], and NaN.
func Float(name string, v, min, max float64) error {
	if v >= min && v <= max {
		return nil
	}
	return &Error{name, strconv.FormatFloat(v, 'g', -1, 64), fmt.Sprintf("want from %g to %g", min, max)}
}

// Port refuses what is not a TCP port; 0 means any free port.
func Port(name string, v int) error {
	if v < 0 || v > 65535 {
		return &Error{name, strconv.Itoa(v), "want a TCP port, 1-65535, or 0 for any free port"}
	}
	return nil
}

// URLs refuses a NATS server URL list that does not parse (transport.CheckURLs).
func URLs(name, v string) error {
	if err := transport.CheckURLs(v); err != nil {
		return &Error{name, strconv.Quote(v), err.Error()}
	}
	return nil
}

// ListenAddr refuses what is not host:port; "" (off) passes.
func ListenAddr(name, v string) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		return &Error{name, strconv.Quote(v), "want host:port, e.g. 127.0.0.1:9464 (" + err.Error() + ")"}
	}
	return nil
}

// First returns the first refusal of checks, run in order.
func First(checks ...error) error {
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}
