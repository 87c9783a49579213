package pxe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
)

// Request is one HTTP request the server answered, whatever its status:
// what a netinstaller asked for (its preseed, the archive mirror).
type Request struct {
	Proto, File, Client string
	Status              int
}

// Lease is an address server mode gave (a DHCPACK).
type Lease struct {
	MAC, IP, VendorClass string
}

// Netinstall is what the netinstaller builtins (pxe.publish,
// pxe.wait_request, pxe.leases) need besides Backend. *Server implements it.
type Netinstall interface {
	PublishData(name string, data []byte) (string, error)
	WaitRequest(ctx context.Context, prefix string) (Request, error)
	Leases() []Lease
}

var _ Netinstall = (*Server)(nil)

// PublishData serves data from memory over HTTP as PublishPrefix+name
// until Close, and returns its URL; WaitFetch(name) waits for it.
// Publishing a name again replaces it.
func (s *Server) PublishData(name string, data []byte) (string, error) {
	n, err := ValidName(name)
	if err != nil {
		return "", fmt.Errorf("pxe: publish: %w", err)
	}
	s.mu.Lock()
	if s.pubData == nil {
		s.pubData, s.pubFetched = map[string][]byte{}, map[string]bool{}
	}
	s.pubData[n] = append([]byte(nil), data...)
	delete(s.pubFetched, n)
	s.mu.Unlock()
	return s.HTTPURL() + "/" + PublishPrefix + n, nil
}

// publishedData returns a name given to PublishData.
func (s *Server) publishedData(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.pubData[name]
	return d, ok
}

// record notes a request and wakes WaitRequest and WaitFetch.
func (s *Server) record(r Request, fetchedData string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) < maxRequests {
		s.requests = append(s.requests, r)
	}
	if fetchedData != "" {
		s.pubFetched[fetchedData] = true
	}
	s.notifyLocked()
}

// maxRequests bounds the requests kept for WaitRequest.
const maxRequests = 10000

func (s *Server) notifyLocked() {
	if s.reqChanged != nil {
		close(s.reqChanged)
	}
	s.reqChanged = make(chan struct{})
}

// waitChange returns a channel closed at the next request or lease.
func (s *Server) waitChangeLocked() chan struct{} {
	if s.reqChanged == nil {
		s.reqChanged = make(chan struct{})
	}
	return s.reqChanged
}

// WaitRequest returns the first HTTP request since Start whose file
// (path without the leading "/") starts with prefix, answered or not.
func (s *Server) WaitRequest(ctx context.Context, prefix string) (Request, error) {
	for {
		s.mu.Lock()
		for _, r := range s.requests {
			if strings.HasPrefix(r.File, prefix) {
				s.mu.Unlock()
				return r, nil
			}
		}
		ch := s.waitChangeLocked()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			err := fmt.Errorf("no request for %s*: %w", prefix, ctx.Err())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Request{}, builtins.Device(err)
			}
			return Request{}, err
		}
	}
}

// waitPublished waits until the data published as name went out whole.
func (s *Server) waitPublished(ctx context.Context, name string) error {
	for {
		s.mu.Lock()
		done := s.pubFetched[name]
		ch := s.waitChangeLocked()
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			err := fmt.Errorf("target did not fetch %s%s: %w", PublishPrefix, name, ctx.Err())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return builtins.Device(err)
			}
			return err
		}
	}
}

// Leases returns the addresses server mode acknowledged, in order.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Lease(nil), s.leases...)
}

func (s *Server) addLease(l Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases = append(s.leases, l)
	s.notifyLocked()
}
