// Package goexpectbench compares basalt's console matcher with
// github.com/google/goexpect on the same stream. It is a module of its own
// so that goexpect and what it pulls in (grpc, genproto) stay out of
// basalt's go.mod; `make bench` runs it.
package goexpectbench
