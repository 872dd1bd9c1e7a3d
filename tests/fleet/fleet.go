// Package fleet tests the fleet setup as an operator runs it: the README's
// commands, with the real binaries, against a real nats-server configured
// from the files driftctl creds writes.
package fleet
