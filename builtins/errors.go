package builtins

import (
	"context"
	"errors"
)

// Class says whose fault an error is; it decides the exit code.
type Class string

const (
	ClassJob      Class = "job"      // bad job file, Starlark error, bad params: exit 2
	ClassInfra    Class = "infra"    // BMC, network, TFTP/HTTP, console transport: exit 3
	ClassDevice   Class = "device"   // target did not boot or respond, kernel panic: exit 4
	ClassCanceled Class = "canceled" // SIGINT/SIGTERM: exit 5
)

// Error is an error with a class.
type Error struct {
	Class Class
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func classed(c Class, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err // keep the innermost, most specific class
	}
	return &Error{Class: c, Err: err}
}

// Infra marks err as an infrastructure error unless it already has a class.
func Infra(err error) error { return classed(ClassInfra, err) }

// Device marks err as a device error unless it already has a class.
func Device(err error) error { return classed(ClassDevice, err) }

// Job marks err as a job error unless it already has a class.
func Job(err error) error { return classed(ClassJob, err) }

// ClassOf returns the class of err: the class it was marked with, canceled
// for context.Canceled, and job for anything else (a Starlark error in the
// job's own code).
func ClassOf(err error) Class {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Class
	}
	if errors.Is(err, context.Canceled) {
		return ClassCanceled
	}
	return ClassJob
}

// Retryable reports whether a stage that failed with err may be retried:
// only infrastructure and device errors are.
func Retryable(err error) bool {
	c := ClassOf(err)
	return c == ClassInfra || c == ClassDevice
}
