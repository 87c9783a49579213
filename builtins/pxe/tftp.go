package pxe

import (
	"io"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/pin/tftp/v3"
)

// tftpRead is pin/tftp's read handler. pin/tftp passes the raw file name
// from the request, so it is validated before anything is looked up.
func (s *Server) tftpRead(filename string, rf io.ReaderFrom) error {
	start := time.Now()
	client := ""
	ot, _ := rf.(tftp.OutgoingTransfer)
	if ot != nil {
		a := ot.RemoteAddr()
		client = a.String()
	}
	name, err := ValidName(filename)
	if err != nil {
		s.refused("tftp", client, filename, err)
		s.emitTFTP(client, filename, 0, 0, start, nil, "refused", "")
		return errNotFound
	}
	r, size, closer, role, err := s.open(name)
	if err != nil {
		s.log.Debug("pxe tftp not found", "client", client, "file", name, "kind", role)
		s.emitTFTP(client, name, 0, 0, start, nil, "not_found", role)
		return err
	}
	if closer != nil {
		defer closer.Close()
	}
	if ot != nil {
		ot.SetSize(size)
	}
	n, err := rf.ReadFrom(r)
	opts := s.takeOpts(client)
	outcome := "ok"
	if err != nil {
		outcome = "error"
		s.log.Warn("pxe tftp transfer failed", "client", client, "file", name, "bytes", n, "err", err)
	} else if n != size {
		outcome = "short"
	}
	s.emitTFTP(client, name, n, size, start, opts, outcome, role)
	if err == nil && n == size {
		s.markFetched(name)
	}
	// pin/tftp has already sent an ERROR packet when the transfer failed;
	// returning the error makes it try again on a closed connection (no-op).
	return err
}

func (s *Server) emitTFTP(client, file string, n, size int64, start time.Time, opts map[string]string, outcome, role string) {
	f := map[string]any{
		"client":      client,
		"file":        clip(file),
		"bytes":       n,
		"duration_ms": time.Since(start).Milliseconds(),
		"outcome":     outcome,
	}
	if role != "" {
		f["kind"] = role
	}
	if size > 0 {
		f["size"] = size
	}
	if v, ok := opts["blksize"]; ok {
		if b, err := strconv.Atoi(v); err == nil {
			f["blksize"] = b
		}
	}
	if v, ok := opts["windowsize"]; ok {
		if w, err := strconv.Atoi(v); err == nil {
			f["windowsize"] = w // RFC 7440, as acknowledged
		}
	}
	if v, ok := opts["tsize"]; ok {
		if t, err := strconv.ParseInt(v, 10, 64); err == nil {
			f["tsize"] = t
		}
	}
	s.emit("tftp", f)
}

// tftpHook collects the options each transfer negotiated (blksize, tsize),
// which pin/tftp reports only to hooks, for the handler's event.
type tftpHook struct{ s *Server }

func (h tftpHook) OnSuccess(st tftp.TransferStats) { h.s.putOpts(st) }
func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	if st.RemoteAddr == nil {
		// A request pin/tftp could not even parse.
		h.s.log.Debug("pxe tftp bad request", "err", err)
		return
	}
	h.s.putOpts(st)
}

func (s *Server) putOpts(st tftp.TransferStats) {
	if st.RemoteAddr == nil {
		return
	}
	key := net.JoinHostPort(st.RemoteAddr.String(), strconv.Itoa(st.Tid))
	m := maps.Clone(map[string]string(st.Opts))
	s.mu.Lock()
	if len(s.opts) > 1024 {
		// Entries of refused or not-found requests are never taken.
		clear(s.opts)
	}
	s.opts[key] = m
	s.mu.Unlock()
}

func (s *Server) takeOpts(client string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.opts[client]
	delete(s.opts, client)
	return m
}
