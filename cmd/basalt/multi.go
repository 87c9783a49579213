package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/runtime/bundle"
	"github.com/basalt-lab/basalt/runtime/interp"
	"github.com/basalt-lab/basalt/runtime/lab"
)

// Multi-device jobs (job(devices = {ROLE: TYPE})): --device ROLE=NAME per
// role; every device locked before anything runs, in device-name order;
// one backends table per role (builtins.Env.SetRole) behind one PXE server.

// splitRoles sorts the values of a repeatable flag (--device NAME,
// --device-type TYPE) into the plain ones and the ROLE=VALUE pairs of a
// multi-device job.
func splitRoles(flag, what string, values []string) ([]string, map[string]string, error) {
	var plain []string
	var roles map[string]string
	for _, v := range values {
		role, val, ok := strings.Cut(v, "=")
		if !ok {
			plain = append(plain, v)
			continue
		}
		if role == "" || val == "" {
			return nil, nil, usagef("--%s %q: want %s, or ROLE=%s for a role of a multi-device job", flag, v, what, what)
		}
		if roles == nil {
			roles = map[string]string{}
		}
		if prev, dup := roles[role]; dup {
			return nil, nil, usagef("--%s: role %s given twice (%s and %s)", flag, role, prev, val)
		}
		roles[role] = val
	}
	switch {
	case len(plain) > 1:
		return nil, nil, usagef("--%s given %d times without ROLE=: a multi-device job takes --%s ROLE=%s per role", flag, len(plain), flag, what)
	case len(plain) == 1 && len(roles) > 0:
		return nil, nil, usagef("--%s %s and --%s ROLE=%s: give one, or ROLE=%s for every role", flag, plain[0], flag, what, what)
	}
	return plain, roles, nil
}

// splitDevices sorts the --device flags into the one device of a
// single-device job (f.device) and the ROLE=NAME pairs of a multi-device
// one (f.roleDevices).
func (f *jobFlags) splitDevices() error {
	plain, roles, err := splitRoles("device", "NAME", f.devices)
	if err != nil {
		return err
	}
	if len(plain) == 1 {
		f.device = plain[0]
	}
	f.roleDevices = roles
	return nil
}

// splitTypes is splitDevices for --device-type: TYPE (a single-device
// pool run) or ROLE=TYPE (a role of a multi-device job taking the first
// free device of the type).
func (f *runFlags) splitTypes() error {
	plain, roles, err := splitRoles("device-type", "TYPE", f.deviceTypes)
	if err != nil {
		return err
	}
	if len(plain) == 1 {
		f.deviceType = plain[0]
	}
	for role, typ := range roles {
		if name, dup := f.roleDevices[role]; dup {
			return usagef("--device %s=%s and --device-type %s=%s: give role %s a device or a type, not both", role, name, role, typ, role)
		}
	}
	f.roleTypes = roles
	if f.deviceType != "" && len(f.roleDevices) > 0 {
		return usagef("--device-type %s and --device ROLE=NAME: give every role of a multi-device job as ROLE=", f.deviceType)
	}
	if f.hold > 0 && len(f.roleTypes) > 0 {
		return usagef("--hold-on-failure is for single-device jobs")
	}
	return nil
}

// roleGiven maps every role given on the command line to what was given.
func (f *runFlags) roleGiven() map[string]string {
	out := map[string]string{}
	for r, n := range f.roleDevices {
		out[r] = n
	}
	for r, t := range f.roleTypes {
		out[r] = "type " + t
	}
	return out
}

// rolePools lists the candidate devices of each --device-type ROLE=TYPE
// (with every --device-tag): a type the lab lacks, or none of it with the
// tags, is a usage error naming the role.
func (f *runFlags) rolePools(l *lab.Lab) error {
	f.poolCands = map[string][]string{}
	for r, typ := range f.roleTypes {
		names, err := poolDevices(l, typ, f.deviceTags)
		if err != nil {
			if isUsage(err) {
				return usagef("role %s: %v", r, err)
			}
			return err
		}
		f.poolCands[r] = names
	}
	return nil
}

// lockRolePools locks the devices of a multi-device job some of whose
// roles take the first free device of a type. It takes all of them or
// none: the devices named, in name order, then a free device of each
// role's pool that no other role has; when one is busy it releases all
// and, within --wait, tries again, so that it never holds a device while
// waiting for another (two such jobs cannot deadlock). It returns the pool
// roles' devices, recorded in result.json's devices.
func (a *app) lockRolePools(ctx context.Context, lb *lab.Lab, named []roleDevice, f *runFlags, plan *interp.Plan, b *bundle.Bundle) ([]*lab.Held, []roleDevice, error) {
	roles := make([]string, 0, len(f.roleTypes))
	for r := range f.roleTypes {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	deadline := time.Now().Add(f.wait)
	for {
		held, picked, err := a.tryRolePools(ctx, lb, named, roles, f, plan, b)
		if err == nil {
			for _, rd := range picked {
				a.learnSecrets(nil, rd.dev)
				facts := lab.Facts(rd.dev)
				b.Update(func(r *bundle.Result) { r.Devices[rd.role] = facts })
			}
			return held, picked, nil
		}
		var be *lab.BusyError
		var pe *lab.PoolBusyError
		if !errors.As(err, &be) && !errors.As(err, &pe) {
			return nil, nil, err
		}
		if !time.Now().Before(deadline) {
			if f.wait > 0 {
				err = fmt.Errorf("%w; gave up after waiting %s for every device at once", err, f.wait)
			}
			return nil, nil, builtins.Infra(err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, &builtins.Error{Class: builtins.ClassCanceled, Err: fmt.Errorf("waiting for the devices: %w", ctx.Err())}
		case <-time.After(time.Duration(200+rand.IntN(200)) * time.Millisecond):
		}
	}
}

// tryRolePools is one attempt of lockRolePools, waiting for nothing.
func (a *app) tryRolePools(ctx context.Context, lb *lab.Lab, named []roleDevice, roles []string, f *runFlags, plan *interp.Plan, b *bundle.Bundle) ([]*lab.Held, []roleDevice, error) {
	held, err := lockRoles(ctx, lb, named, plan.Job.Name, 0, b.Emit)
	if err != nil {
		return nil, nil, err
	}
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Release()
		}
	}
	used := map[string]bool{}
	for _, rd := range named {
		used[rd.dev.Name] = true
	}
	var picked []roleDevice
	for _, r := range roles {
		var cands []string
		for _, n := range f.poolCands[r] {
			if !used[n] {
				cands = append(cands, n)
			}
		}
		if len(cands) == 0 {
			release()
			return nil, nil, builtins.Job(fmt.Errorf("role %s: every device of pool %s is another role's", r, poolName(f.roleTypes[r], f.deviceTags)))
		}
		h, err := lockPool(ctx, lb, f.roleTypes[r], f.deviceTags, cands, plan.Job.Name, 0)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("role %s: %w", r, err)
		}
		held = append(held, h)
		used[h.Device] = true
		dev, err := lb.Device(h.Device)
		if err == nil {
			err = compatibleType(plan.Job.Pos, "role "+r+": ", plan.Job.Devices[r], lb, dev)
		}
		if err == nil {
			var st lab.State
			if st, err = lab.ReadState(filepath.Dir(h.Path), dev.Name); err == nil {
				err = st.Admit(dev.Name, false)
			}
			if err != nil {
				err = builtins.Device(err)
			}
		}
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("role %s: %w", r, err)
		}
		b.Emit("device_locked", map[string]any{"device": dev.Name, "role": r, "pool": poolName(f.roleTypes[r], f.deviceTags)})
		picked = append(picked, roleDevice{role: r, dev: dev})
	}
	return held, picked, nil
}

// resolveMulti resolves the devices of a multi-device run before the job
// is declared: those named (resolveRoles) and the candidates of each pool
// role. err is a usage error, the run's end; labErr a lab file that does
// not load, reported in the bundle.
func (a *app) resolveMulti(f *runFlags) (lb *lab.Lab, roles []roleDevice, labErr, err error) {
	lb, roles, err = resolveRoles(f.lab, f.roleDevices)
	if isUsage(err) {
		return nil, nil, nil, err
	}
	labErr = err
	for _, rd := range roles {
		a.learnSecrets(nil, rd.dev)
	}
	if len(f.roleTypes) > 0 && labErr == nil {
		if lb == nil {
			lb, labErr = loadLab(f.lab)
		}
		if labErr == nil {
			a.learnSecrets(lb, nil)
			if err := f.rolePools(lb); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return lb, roles, labErr, nil
}

// lockMulti locks every device of a multi-device run (lockRoles, or
// lockRolePools with pool roles) and returns all roles with their devices,
// sorted by role, and the function that releases the locks (also on error).
func (a *app) lockMulti(lb *lab.Lab, roles []roleDevice, f *runFlags, plan *interp.Plan, b *bundle.Bundle) ([]roleDevice, func(), error) {
	var (
		held []*lab.Held
		err  error
	)
	if len(f.roleTypes) > 0 {
		var picked []roleDevice
		held, picked, err = a.lockRolePools(a.ctx, lb, roles, f, plan, b)
		roles = append(roles, picked...)
		sort.Slice(roles, func(i, j int) bool { return roles[i].role < roles[j].role })
	} else {
		held, err = lockRoles(a.ctx, lb, roles, plan.Job.Name, f.wait, b.Emit)
	}
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Release()
		}
	}
	return roles, release, err
}

// roleDevice is a role of a multi-device job and the device it runs on.
type roleDevice struct {
	role string
	dev  *lab.Device
}

// resolveRoles finds each role's device in the lab, sorted by role. A
// device the lab lacks and two roles on one device are usage errors; a
// broken device file is a job error (in err, with the usage errors first).
// Each role given sim gets a node of its own, with a MAC of its own.
func resolveRoles(labFlag string, given map[string]string) (*lab.Lab, []roleDevice, error) {
	roles := make([]string, 0, len(given))
	for r := range given {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	var (
		lb    *lab.Lab
		out   []roleDevice
		jobEr error
	)
	byDev := map[string]string{}
	for _, r := range roles {
		name := given[r]
		l, d, err := resolveDevice(labFlag, name)
		if err != nil {
			if isUsage(err) {
				return nil, nil, usagef("--device %s=%s: %v", r, name, err)
			}
			if jobEr == nil {
				jobEr = fmt.Errorf("role %s: %w", r, err)
			}
			continue
		}
		if lb == nil {
			lb = l
		}
		if name == "sim" {
			d = lab.BuiltinSim("sim-" + r) // a node, and a MAC, per role
		} else if other, dup := byDev[d.Name]; dup {
			return nil, nil, usagef("--device %s=%s and --device %s=%s: two roles on one device; each role needs a device of its own", other, name, r, name)
		}
		byDev[d.Name] = r
		out = append(out, roleDevice{role: r, dev: d})
	}
	return lb, out, jobEr
}

func isUsage(err error) bool {
	_, ok := err.(*usageError)
	return ok
}

// checkRoles holds the --device ROLE=NAME flags to the job's roles: a role
// with no device, or a device for a role the job lacks, is a usage error
// naming it.
func checkRoles(plan *interp.Plan, given map[string]string) error {
	roles := plan.Job.Roles()
	if len(roles) == 0 {
		if len(given) > 0 {
			return usagef("--device ROLE=NAME: job %s declares no devices = {ROLE: TYPE}: give --device NAME", plan.Job.Name)
		}
		return nil
	}
	var missing []string
	for _, r := range roles {
		if _, ok := given[r]; !ok {
			missing = append(missing, r)
		}
	}
	for r, name := range given {
		if _, ok := plan.Job.Devices[r]; !ok {
			return usagef("--device %s=%s: job %s has no role %s (roles: %s)", r, name, plan.Job.Name, r, strings.Join(roles, ", "))
		}
	}
	if len(missing) > 0 {
		return usagef("%s: job %s has roles %s: no device given for %s: give --device %s=NAME",
			plan.Job.Pos, plan.Job.Name, strings.Join(roles, ", "), strings.Join(missing, ", "), missing[0])
	}
	return nil
}

// compatibleRoles checks each role's device against the role's type.
func compatibleRoles(plan *interp.Plan, lb *lab.Lab, roles []roleDevice) error {
	for _, rd := range roles {
		if err := compatibleType(plan.Job.Pos, "role "+rd.role+": ", plan.Job.Devices[rd.role], lb, rd.dev); err != nil {
			return err
		}
	}
	return nil
}

// lockRoles locks the lab devices of every role (a sim node needs no
// lock) in device-name order, so that two multi-device jobs wanting the
// same devices never hold one each and wait for the other's; a device
// that cannot be had releases those taken (infrastructure error naming
// it). Then each device must admit the job (not offline, good health).
func lockRoles(ctx context.Context, lb *lab.Lab, roles []roleDevice, job string, wait time.Duration, emit func(string, map[string]any)) ([]*lab.Held, error) {
	sorted := append([]roleDevice(nil), roles...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].dev.Name < sorted[j].dev.Name })
	var held []*lab.Held
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Release()
		}
	}
	for _, rd := range sorted {
		if rd.dev.File == "" {
			continue
		}
		h, err := lockDevice(ctx, lb, rd.dev, job, wait)
		if err != nil {
			release()
			return nil, fmt.Errorf("role %s: %w (released the devices taken)", rd.role, err)
		}
		held = append(held, h)
		emit("device_locked", map[string]any{"device": rd.dev.Name, "role": rd.role})
		st, err := lab.ReadState(filepath.Dir(h.Path), rd.dev.Name)
		if err == nil {
			err = st.Admit(rd.dev.Name, false)
		}
		if err != nil {
			release()
			return nil, builtins.Device(fmt.Errorf("role %s: %w", rd.role, err))
		}
	}
	return held, nil
}

// roleEnvs makes the env of each role (its device, facts and recorder)
// and sets it on env, the job's own, which has no device. A lab device's
// console is served to `basalt console DEVICE`, read-only, on the socket
// beside its lock, as in a single-device job; the returned function stops
// serving (before the locks are released: the next holder's socket has
// the same path).
//
// follow, when set (--follow), receives every role's console by whole
// lines, each starting with "[ROLE] ", so that two consoles never mix
// within a line.
func roleEnvs(env *builtins.Env, b *bundle.Bundle, lb *lab.Lab, roles []roleDevice, follow io.Writer) (func(), error) {
	var hubs closeList
	var followMu sync.Mutex
	for _, rd := range roles {
		var ws []io.Writer
		var h *hub
		if rd.dev.File != "" {
			h = newHub()
			ws = append(ws, h)
		}
		if follow != nil {
			ws = append(ws, &linePrefixer{w: follow, mu: &followMu, prefix: "[" + rd.role + "] "})
		}
		var w io.Writer
		if len(ws) > 0 {
			w = io.MultiWriter(ws...)
		}
		rec, err := b.ForRole(rd.role, w)
		if err != nil {
			return hubs.close, builtins.Infra(err)
		}
		if h != nil {
			if err := h.serve(consoleSocket(lb, rd.dev)); err != nil {
				env.Logger().Warn("no console for basalt console", "device", rd.dev.Name, "role", rd.role, "error", err)
			}
			hubs.add(h.close)
		}
		re := &builtins.Env{Ctx: env.Ctx, JobDir: env.JobDir, Rec: rec, Log: env.Logger().With("role", rd.role), Params: env.Params,
			Facts: lab.Facts(rd.dev), Role: rd.role}
		lab.SetDevice(re, rd.dev)
		env.SetRole(rd.role, re)
	}
	return hubs.close, nil
}

// wireRoles builds every role's backends, as wire does for one device,
// behind one PXE server: two would fight over the DHCP ports, and one
// serves each role's MAC its own config (pxe.Server.Scope). The returned
// function releases everything, in reverse order, also on error.
func wireRoles(ctx, life context.Context, deadline time.Time, env *builtins.Env, lb *lab.Lab, b *bundle.Bundle) (func(), error) {
	var closers closeList
	release := closers.close
	byMAC := map[string]string{}
	for _, role := range env.Roles() {
		re, _ := env.RoleEnv(role)
		if mac, err := net.ParseMAC(lab.DeviceOf(re).MAC); err == nil {
			byMAC[mac.String()] = role
		}
	}
	pcfg := pxeConfig(lb, pxeRoles(byMAC, b.Emit), env.Logger())
	for _, role := range env.Roles() {
		re, _ := env.RoleEnv(role)
		dev := lab.DeviceOf(re)
		if dev.Segment.Kind != "" {
			return release, builtins.Job(fmt.Errorf("role %s: device %s has a job segment, which multi-device jobs do not support yet", role, dev.Name))
		}
		if pcfg.DHCP == "server" && dev.MAC != "" {
			pcfg.DHCPMACs = append(pcfg.DHCPMACs, dev.MAC)
		}
	}
	srv := pxe.NewServer(pcfg)
	if err := srv.Start(life); err != nil {
		return release, builtins.Infra(fmt.Errorf("start PXE server: %w", err))
	}
	closers.add(func() { srv.Close() })
	for _, role := range env.Roles() {
		re, _ := env.RoleEnv(role)
		rec := re.Rec.(*bundle.RoleRecorder)
		scoped := srv.Scope(role)
		pxe.SetBackend(re, scoped)
		rest, err := wireDevice(ctx, life, deadline, re, lb, rec, srv, scoped, pcfg.CacheDir, nil)
		closers.add(rest)
		if err != nil {
			return release, fmt.Errorf("role %s: %w", role, err)
		}
	}
	return release, nil
}

// roleFacts are result.json's devices: each role's device, secrets
// redacted.
func roleFacts(roles []roleDevice) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, rd := range roles {
		out[rd.role] = lab.Facts(rd.dev)
	}
	return out
}

// checkRoleDevices is `basalt check` of a multi-device job: every role's
// device type exists and, for the roles given --device ROLE=NAME, the
// device is of it; it returns the lines that name the devices.
func checkRoleDevices(plan *interp.Plan, labFlag string, given map[string]string) ([]string, error) {
	roles := plan.Job.Roles()
	if len(roles) == 0 {
		return nil, checkRoles(plan, given)
	}
	for r, name := range given {
		if _, ok := plan.Job.Devices[r]; !ok {
			return nil, usagef("--device %s=%s: job %s has no role %s (roles: %s)", r, name, plan.Job.Name, r, strings.Join(roles, ", "))
		}
	}
	lb, _ := loadLab(labFlag)
	var lines []string
	byDev := map[string]string{}
	for _, r := range roles {
		var dev *lab.Device
		l := lb
		if name, ok := given[r]; ok {
			var err error
			l, dev, err = lookupDevice(labFlag, name, false)
			if err != nil {
				if isUsage(err) {
					return nil, usagef("--device %s=%s: %v", r, name, err)
				}
				return nil, fmt.Errorf("role %s: %w", r, err)
			}
			if other, dup := byDev[dev.Name]; dup && name != "sim" {
				return nil, usagef("--device %s=%s and --device %s=%s: two roles on one device; each role needs a device of its own", other, name, r, name)
			}
			byDev[dev.Name] = r
		}
		if err := compatibleType(plan.Job.Pos, "role "+r+": ", plan.Job.Devices[r], l, dev); err != nil {
			return nil, err
		}
		if dev != nil {
			lines = append(lines, fmt.Sprintf("device:      %s = %s (type %s)", r, dev.Name, dev.Type.Name))
		}
	}
	return lines, nil
}

// startRoles is reporter.start for a multi-device job.
func (r *reporter) startRoles(plan *interp.Plan, roles []roleDevice, dir string) {
	on := make([]string, 0, len(roles))
	for _, rd := range roles {
		on = append(on, rd.role+"="+rd.dev.Name)
	}
	r.printf("%s %s on devices %s (%d stages, timeout %s)\n", r.paint(bold, "job"), plan.Job.Name, strings.Join(on, " "), len(plan.Stages), plan.Job.Timeout)
	r.printf("bundle %s\n", dir)
}

// pxeRoles adds the role to the events of the PXE server that all roles
// share, where the event names a MAC (DHCP's client, pxe_serve's mac, a
// pxelinux.cfg/01-<mac> config) or a file under the nonce of a role's
// boot; other events (a loader, an unknown name) stay without one.
func pxeRoles(byMAC map[string]string, emit func(string, map[string]any)) func(string, map[string]any) {
	var mu sync.Mutex
	byNonce := map[string]string{}
	return func(typ string, f map[string]any) {
		role := ""
		for _, k := range []string{"mac", "client"} {
			if s, ok := f[k].(string); ok && byMAC[s] != "" {
				role = byMAC[s]
			}
		}
		mu.Lock()
		if file, ok := f["file"].(string); ok && role == "" {
			if mac, ok := strings.CutPrefix(file, "pxelinux.cfg/01-"); ok {
				role = byMAC[strings.ReplaceAll(mac, "-", ":")]
			} else if nonce, _, ok := strings.Cut(file, "/"); ok {
				role = byNonce[nonce]
			}
		}
		if n, ok := f["nonce"].(string); ok && typ == "pxe_serve" && role != "" {
			byNonce[n] = role
		}
		mu.Unlock()
		if role != "" {
			if _, ok := f["role"]; !ok {
				f["role"] = role
			}
		}
		emit(typ, f)
	}
}

// linePrefixer writes whole lines to w, each after prefix; a line waits
// for its newline. Writers sharing w share mu.
type linePrefixer struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.mu.Lock()
		_, err := p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}
