// Package nldump retries netlink dumps the kernel interrupted.
package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// attempts bounds the tries: a table changing without pause (links made
// and deleted in a loop) still ends in an error, never in a hang.
const attempts = 10

// Retry returns dump's result once the kernel did not interrupt it. A dump
// (of links, addresses or routes) that overlaps a change of its table ends
// with NLM_F_DUMP_INTR, and vishvananda/netlink returns the partial list
// with ErrDumpInterrupted: any namespace being destroyed on the machine,
// its veths deleted with it, can cause one. A partial list must not be
// read as the whole table (a link left over taken for gone).
func Retry[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range attempts {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("%w, %d times in a row", err, attempts)
}
