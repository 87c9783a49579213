package bundle

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/basalt-lab/basalt/builtins"
)

// RoleRecorder is the recorder of one role of a multi-device job: the
// bundle's, with the role added to every event and test case, the role's
// own console capture (console-ROLE.log) and its artifacts under
// artifacts/ROLE/. It has every method of the bundle (embedded), so what
// a builtin asserts on its env's recorder (test summaries, inputs) works
// the same.
type RoleRecorder struct {
	*Bundle
	Role string
}

var _ builtins.Recorder = (*RoleRecorder)(nil)

// ForRole returns the recorder of role. Its console file is created now
// (an error if it cannot be), so that every role's console log exists
// whatever happens. follow, when not nil, receives the role's console
// bytes too, secrets masked (a read-only `basalt console DEVICE`).
func (b *Bundle) ForRole(role string, follow io.Writer) (*RoleRecorder, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.roleW[role]; !ok {
		name := "console-" + role + ".log"
		f, err := os.OpenFile(filepath.Join(b.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if b.roleCons == nil {
			b.roleCons, b.roleW = map[string]*os.File{}, map[string]*StreamWriter{}
		}
		b.roleCons[role] = f
		var w io.Writer = f
		if follow != nil {
			w = io.MultiWriter(f, follow)
		}
		b.roleW[role] = NewStreamWriter(b.R, w)
	}
	return &RoleRecorder{Bundle: b, Role: role}, nil
}

// Emit records an event with the role.
func (r *RoleRecorder) Emit(typ string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	if _, ok := fields["role"]; !ok {
		fields["role"] = r.Role
	}
	r.Bundle.Emit(typ, fields)
}

// TestCase records a test case of the role.
func (r *RoleRecorder) TestCase(tc builtins.TestCase) {
	tc.Role = r.Role
	r.Bundle.TestCase(tc)
}

// Console is where the role's console bytes go: console-ROLE.log, secrets
// masked.
func (r *RoleRecorder) Console() io.Writer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roleW[r.Role]
}

// Artifact stores a file of the role under artifacts/ROLE/.
func (r *RoleRecorder) Artifact(name string, rd io.Reader, sha256hex string) (string, error) {
	return r.Bundle.Artifact(r.Role+"/"+name, rd, sha256hex)
}

// flushRoles writes out what the roles' console writers hold back.
func (b *Bundle) flushRoles() {
	b.mu.Lock()
	ws := make([]*StreamWriter, 0, len(b.roleW))
	for _, w := range b.roleW {
		ws = append(ws, w)
	}
	b.mu.Unlock()
	for _, w := range ws {
		w.Flush()
	}
}
