package bmcsim

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// sel is the sim BMC's System Event Log (IPMI v2.0 §31), which go-ipmi's
// BMC does not have: Get SEL Info, Reserve SEL, Get SEL Entry and Add SEL
// Entry, answered as OpenIPMI's ipmi_sim answers them (lanserv/bmc_storage.c;
// the differential test TestSELSimAgainstIPMISim reads both with one client
// after the same ipmitool adds). Records are 16 bytes (§32); the BMC
// assigns the record id and, for timestamped records, the time (§31.6).
type sel struct {
	mu          sync.Mutex
	records     [][16]byte
	next        uint16 // the id the next record gets
	reservation uint16
	added       time.Time
}

// selMax is how many records the log holds, ipmi_sim's sel_enable limit
// in basalt's tests.
const selMax = 1000

func (s *sel) register(reg *handlers.Registry) {
	reg.RegisterFunc(types.CommandGetSELInfo, s.info)
	reg.RegisterFunc(types.CommandReserveSEL, s.reserve)
	reg.RegisterFunc(types.CommandGetSELEntry, s.get)
	reg.RegisterFunc(types.CommandAddSELEntry, s.add)
}

// info answers Get SEL Info (Table 31-2).
func (s *sel) info(_ context.Context, _ *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]byte, 14)
	out[0] = 0x51 // SEL version: IPMI v1.5/2.0
	binary.LittleEndian.PutUint16(out[1:], uint16(len(s.records)))
	binary.LittleEndian.PutUint16(out[3:], uint16((selMax-len(s.records))*16))
	if !s.added.IsZero() {
		binary.LittleEndian.PutUint32(out[5:], uint32(s.added.Unix()))
	}
	binary.LittleEndian.PutUint32(out[9:], 0xffffffff) // never erased
	out[13] = 0x02                                     // Reserve SEL supported
	return out, types.CodeOK, nil
}

// reserve answers Reserve SEL (Table 31-4).
func (s *sel) reserve(_ context.Context, _ *handlers.HandlerContext, _ []byte) ([]byte, types.CompletionCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reservation++
	if s.reservation == 0 {
		s.reservation = 1
	}
	out := make([]byte, 2)
	binary.LittleEndian.PutUint16(out, s.reservation)
	return out, types.CodeOK, nil
}

// get answers Get SEL Entry (Table 31-5): record 0000h is the first,
// FFFFh the last; the next record id of the last is FFFFh.
func (s *sel) get(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 6 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resID, id, off, n := binary.LittleEndian.Uint16(req), binary.LittleEndian.Uint16(req[2:]), int(req[4]), int(req[5])
	if (off != 0 || n != 0xff) && resID != s.reservation {
		// A partial read needs the current reservation (§31.5).
		return nil, types.CodeReservationCanceled, nil
	}
	i := -1
	switch {
	case len(s.records) == 0:
	case id == 0x0000:
		i = 0
	case id == 0xffff:
		i = len(s.records) - 1
	default:
		for j, r := range s.records {
			if binary.LittleEndian.Uint16(r[:]) == id {
				i = j
			}
		}
	}
	if i < 0 {
		return nil, types.CodeRequestedDataNotPresent, nil
	}
	next := uint16(0xffff)
	if i+1 < len(s.records) {
		next = binary.LittleEndian.Uint16(s.records[i+1][:])
	}
	if n == 0xff {
		off, n = 0, 16
	}
	if off > 16 {
		return nil, types.CodeParameterOutOfRange, nil
	}
	n = min(n, 16-off)
	out := make([]byte, 2, 2+n)
	binary.LittleEndian.PutUint16(out, next)
	rec := s.records[i]
	return append(out, rec[off:off+n]...), types.CodeOK, nil
}

// add answers Add SEL Entry (Table 31-6).
func (s *sel) add(_ context.Context, _ *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) != 16 {
		return nil, types.CodeRequestDataLengthInvalid, nil
	}
	var rec [16]byte
	copy(rec[:], req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) >= selMax {
		return nil, types.CompletionCode(0x80), nil // Table 31-6: out of space
	}
	if s.next == 0 || s.next == 0xffff {
		s.next = 1
	}
	id := s.next
	s.next++
	binary.LittleEndian.PutUint16(rec[:], id)
	now := time.Now()
	// Record types 00h-DFh carry a timestamp the BMC sets (§32.1,
	// §32.2); E0h-FFh are OEM data without one (§32.3).
	if rec[2] < 0xe0 {
		binary.LittleEndian.PutUint32(rec[3:], uint32(now.Unix()))
	}
	s.records = append(s.records, rec)
	s.added = now
	out := make([]byte, 2)
	binary.LittleEndian.PutUint16(out, id)
	return out, types.CodeOK, nil
}
