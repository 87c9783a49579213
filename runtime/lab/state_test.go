package lab

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Concurrent writers never lose an update (each adds its mark under the
// state lock) and readers never see a torn file.
func TestUpdateStateConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(readErr)
				return
			default:
			}
			if _, err := ReadState(dir, "d1"); err != nil {
				readErr <- err
				close(readErr)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := UpdateState(dir, "d1", func(s *State) { s.Reason += fmt.Sprintf("<%d>", i) }); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	if err := <-readErr; err != nil {
		t.Errorf("ReadState during updates: %v", err)
	}
	s, err := ReadState(dir, "d1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if !strings.Contains(s.Reason, fmt.Sprintf("<%d>", i)) {
			t.Errorf("ReadState(d1).Reason = %q, lost update %d", s.Reason, i)
		}
	}
}

func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		s      State
		health bool
		ok     bool
	}{
		{State{}, false, true},
		{State{Offline: true, Reason: "x"}, false, false},
		{State{Offline: true}, true, false}, // maintenance stops health checks too
		{State{Health: HealthBad}, false, false},
		{State{Health: HealthBad}, true, true},
		{State{Health: HealthGood}, false, true},
	} {
		err := tc.s.Admit("d1", tc.health)
		var re *RefusedError
		if (err == nil) != tc.ok || (err != nil && !errors.As(err, &re)) {
			t.Errorf("%+v.Admit(d1, %v) = %v, want ok %v", tc.s, tc.health, err, tc.ok)
		}
	}
	if _, err := ReadState(t.TempDir(), "../x"); err == nil {
		t.Errorf("ReadState(../x) = nil error, want a bad name refused")
	}
}
