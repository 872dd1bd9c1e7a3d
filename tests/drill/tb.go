package drill

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// lifetime lets a test bed made by testbed.New run outside a test
// (driftctl drill): it is the bed's testbed.TB, keeping the cleanups the
// bed registers and turning a Fatalf into an error (guard).
type lifetime struct {
	mu       sync.Mutex
	cleanups []func()
	errs     []error
}

// fatal is what Fatalf panics with; guard recovers it.
type fatal struct{ err error }

func (l *lifetime) Helper() {}

func (l *lifetime) Cleanup(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

func (l *lifetime) Errorf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Errorf(format, a...))
}

func (l *lifetime) Fatalf(format string, a ...any) { panic(fatal{fmt.Errorf(format, a...)}) }

// tempDir makes a directory removed at the end.
func (l *lifetime) tempDir() (string, error) {
	d, err := os.MkdirTemp("", "driftdrill-")
	if err != nil {
		return "", err
	}
	l.Cleanup(func() { os.RemoveAll(d) })
	return d, nil
}

// end runs the cleanups, last registered first, and returns the errors
// they reported.
func (l *lifetime) end() error {
	l.mu.Lock()
	cs := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// guard runs f and returns the error of a Fatal inside it.
func guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = fe.err
		}
	}()
	f()
	return nil
}
