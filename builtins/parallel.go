package builtins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Documentation of the builtins of multi-device jobs, for `basalt doc`
// (runtime/interp's Declarations table lists them).
const (
	ParallelParams = "fns"
	ParallelDoc    = "Runs the functions of the dict fns ({\"server\": serve, \"client\": fetch}) at once, each fn() in a " +
		"Starlark thread of its own under the stage's deadline, and returns the dict of their return values by the same " +
		"names. The first function to fail cancels the others; parallel then fails with its error (its class decides the " +
		"stage's), the others' errors being \"parallel_error\" events. A function named after a role of the job records " +
		"its test cases and events with that role. Inside the functions, sync, send and wait coordinate them (LAVA " +
		"MultiNode's lava-sync, lava-send and lava-wait, within one process). The functions run Starlark one at a " +
		"time, as Python threads do under the GIL, and let go of each other whenever one waits in an action builtin, " +
		"time.sleep, sync or wait: their devices work at once, and the values they share (ctx.state, a list of " +
		"their closure) change in one function at a time. A loop that calls no builtin holds the others until it ends."
	SyncParams = "name"
	SyncDoc    = "A barrier between the functions of one parallel() call: returns once every one of them has called " +
		"sync(name) (the n-th call of each with the n-th of the others). Outside parallel() it is a job error; a function " +
		"that returns without reaching it is a job error in those waiting; not reached by the deadline, a device error " +
		"naming the functions that did not."
	SendParams = "name, value=None"
	SendDoc    = "Sends the message name with value (anything json.encode takes) to the other functions of one parallel() " +
		"call; wait(name) returns it. Each name is sent once per parallel() call. Outside parallel() it is a job error."
	WaitParams = "name, timeout=None"
	WaitDoc    = "Waits until another function of the same parallel() call has sent the message name and returns its " +
		"value. Not sent in time (timeout= can only shorten the stage's deadline), or every other function returned " +
		"without sending it, is a device error naming the message and the functions that did not send it. Outside " +
		"parallel() it is a job error."
)

// groupKey is the thread-local key of a parallel function's group,
// lockKey that of its group's interpreter lock.
const (
	groupKey = "basalt.parallel"
	lockKey  = "basalt.parallel.lock"
)

// The functions of one parallel() call run Starlark one at a time, as
// Python threads do under the GIL: each holds its group's lock while it
// executes Starlark and lets go of it while it waits in a builtin (every
// action builtin, time.sleep, sync, send, wait), so the devices work at
// once while the values the functions share — ctx.state, a list of their
// closure — are never read and written by two goroutines together
// (go.starlark.net's values are not safe for that). sync, send and wait
// are action builtins: the envelope lets go of the lock around them.

// Unlocked lets go of the interpreter lock of a parallel() function, if
// thread is one, while a builtin waits; call the returned function when it
// is done waiting (defer builtins.Unlocked(thread)()). A builtin that calls
// back into Starlark must not.
func Unlocked(thread *starlark.Thread) func() {
	m, _ := thread.Local(lockKey).(*sync.Mutex)
	if m == nil {
		return func() {}
	}
	m.Unlock()
	return m.Lock
}

// inParallel reports whether thread runs a function of parallel().
func inParallel(thread *starlark.Thread) bool {
	m, _ := thread.Local(lockKey).(*sync.Mutex)
	return m != nil
}

// snapshot copies the lists, dicts and sets in v (deeply), so that a
// builtin reads its arguments unchanged while it runs without the
// interpreter lock and another function of parallel() changes them.
func snapshot(v starlark.Value) starlark.Value { return snapshotDepth(v, 0) }

// maxSnapshotDepth bounds snapshot's recursion: a list may hold itself.
const maxSnapshotDepth = 64

func snapshotDepth(v starlark.Value, depth int) starlark.Value {
	if depth > maxSnapshotDepth {
		return v
	}
	depth++
	switch x := v.(type) {
	case *starlark.List:
		elems := make([]starlark.Value, x.Len())
		for i := range elems {
			elems[i] = snapshotDepth(x.Index(i), depth)
		}
		return starlark.NewList(elems)
	case starlark.Tuple:
		out := make(starlark.Tuple, len(x))
		for i, e := range x {
			out[i] = snapshotDepth(e, depth)
		}
		return out
	case *starlark.Dict:
		d := starlark.NewDict(x.Len())
		for _, kv := range x.Items() {
			d.SetKey(kv[0], snapshotDepth(kv[1], depth))
		}
		return d
	case *starlark.Set:
		c := new(starlark.Set)
		iter := x.Iterate()
		defer iter.Done()
		var e starlark.Value
		for iter.Next(&e) {
			c.Insert(e)
		}
		return c
	}
	return v
}

// snapshotArgs is snapshot for a call's arguments.
func snapshotArgs(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
	a := snapshot(args).(starlark.Tuple)
	kw := make([]starlark.Tuple, len(kwargs))
	for i, kv := range kwargs {
		kw[i] = starlark.Tuple{kv[0], snapshot(kv[1])}
	}
	return a, kw
}

// group is what the functions of one parallel() call share: their
// barriers and their messages.
type group struct {
	names []string
	mu    sync.Mutex
	done  map[string]bool
	syncs map[string]map[string]int // barrier -> function -> times reached
	msgs  map[string]message
	// changed is closed and replaced on every change.
	changed chan struct{}
}

type message struct {
	from  string
	value starlark.Value
}

// branch is one function of a group, as its thread knows it.
type branch struct {
	g    *group
	name string
}

func (g *group) changedLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *group) finish(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done[name] = true
	g.changedLocked()
}

func branchOf(thread *starlark.Thread, fn string) (*branch, error) {
	b, _ := thread.Local(groupKey).(*branch)
	if b == nil {
		return nil, Job(fmt.Errorf("%s: only inside a function that parallel() runs", fn))
	}
	return b, nil
}

// Parallel is the parallel builtin.
func Parallel(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fns *starlark.Dict
	if err := starlark.UnpackArgs(name, args, kwargs, "fns", &fns); err != nil {
		return nil, Job(err)
	}
	env := EnvOf(thread)
	if env == nil || env.Spawn == nil || env.Ctx == nil {
		return nil, Job(fmt.Errorf("%s: only in a stage or cleanup function", name))
	}
	g := &group{done: map[string]bool{}, syncs: map[string]map[string]int{}, msgs: map[string]message{}, changed: make(chan struct{})}
	var calls []starlark.Callable
	for _, kv := range fns.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok || k == "" {
			return nil, Job(fmt.Errorf("%s: names must be non-empty strings, got %s", name, kv[0]))
		}
		fn, ok := kv[1].(starlark.Callable)
		if !ok {
			return nil, Job(fmt.Errorf("%s: %s: want a function, got %s", name, string(k), kv[1].Type()))
		}
		g.names = append(g.names, string(k))
		calls = append(calls, fn)
	}
	if len(calls) == 0 {
		return nil, Job(fmt.Errorf("%s: no functions given", name))
	}
	ctx, cancel := context.WithCancelCause(env.Ctx)
	defer cancel(nil)
	interp := new(sync.Mutex)
	type result struct {
		v   starlark.Value
		err error
	}
	results := make([]result, len(calls))
	var (
		mu    sync.Mutex
		first = -1
		wg    sync.WaitGroup
	)
	for i, fn := range calls {
		bname := g.names[i]
		t := env.Spawn(thread.Name + "/" + bname)
		t.SetLocal(groupKey, &branch{g: g, name: bname})
		t.SetLocal(lockKey, interp)
		ce := env.WithContext(ctx, env.Stage)
		if re, ok := env.RoleEnv(bname); ok {
			ce.Rec = re.Rec
		}
		Attach(t, ce)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() {
				if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
					t.Cancel(c.Error())
				} else {
					t.Cancel("stage deadline reached")
				}
			})
			defer stop()
			interp.Lock()
			v, err := starlark.Call(t, fn, nil, nil)
			interp.Unlock()
			results[i] = result{v, err}
			if err != nil {
				// Before finish: the others, woken by it, must find this
				// failure first, not a function that merely returned.
				mu.Lock()
				if first < 0 {
					first = i
					cancel(fmt.Errorf("canceled: %s failed", bname))
				}
				mu.Unlock()
			}
			g.finish(bname)
		}()
	}
	wg.Wait()
	if first < 0 {
		out := starlark.NewDict(len(calls))
		for i, r := range results {
			v := r.v
			if v == nil {
				v = starlark.None
			}
			out.SetKey(starlark.String(g.names[i]), v)
		}
		return out, nil
	}
	var others []string
	for i, r := range results {
		if r.err == nil || i == first {
			continue
		}
		others = append(others, g.names[i])
		env.Emit("parallel_error", map[string]any{"function": g.names[i], "error": r.err.Error(), "class": string(ClassOf(r.err))})
	}
	err := results[first].err
	msg := fmt.Sprintf("%s: %s", g.names[first], err)
	if len(others) > 0 {
		msg += fmt.Sprintf(" (then %s failed too)", strings.Join(others, ", "))
	}
	return nil, &parallelError{msg: msg, err: err}
}

// parallelError is the error of the first function that failed, its
// class kept (errors.As finds it), its message naming the function.
type parallelError struct {
	msg string
	err error
}

func (e *parallelError) Error() string { return e.msg }
func (e *parallelError) Unwrap() error { return e.err }

// Sync is the sync builtin.
func Sync(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var barrier string
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &barrier); err != nil {
		return nil, Job(err)
	}
	b, err := branchOf(thread, name)
	if err != nil {
		return nil, err
	}
	g := b.g
	g.mu.Lock()
	if g.syncs[barrier] == nil {
		g.syncs[barrier] = map[string]int{}
	}
	g.syncs[barrier][b.name]++
	n := g.syncs[barrier][b.name]
	g.changedLocked()
	g.mu.Unlock()
	ctx, cancel := CallContext(thread, 0)
	defer cancel()
	for {
		g.mu.Lock()
		var missing, gone []string
		for _, o := range g.names {
			if g.syncs[barrier][o] < n {
				missing = append(missing, o)
				if g.done[o] {
					gone = append(gone, o)
				}
			}
		}
		ch := g.changed
		g.mu.Unlock()
		if len(missing) == 0 {
			return starlark.None, nil
		}
		if len(gone) > 0 && ctx.Err() == nil {
			return nil, Job(fmt.Errorf("%s(%q) in %s: %s returned without reaching it", name, barrier, b.name, strings.Join(gone, ", ")))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, waitErr(ctx, fmt.Errorf("%s(%q) in %s: %s did not reach it", name, barrier, b.name, strings.Join(missing, ", ")))
		}
	}
}

// waitErr classes err, a wait that ctx ended: past the deadline the device
// did not get where the job expected (a device error); canceled (a signal,
// another function's failure), it is neither's fault.
func waitErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Device(fmt.Errorf("%w: %w", err, ctx.Err()))
	}
	return fmt.Errorf("%w: %w", err, context.Cause(ctx))
}

// Send is the send builtin.
func Send(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var msg string
	var value starlark.Value = starlark.None
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &msg, "value?", &value); err != nil {
		return nil, Job(err)
	}
	b, err := branchOf(thread, name)
	if err != nil {
		return nil, err
	}
	// JSON, as LAVA's messages are strings: a value that works here works
	// between processes too, and nothing mutable is shared by threads.
	enc, err := starlark.Call(thread, json.Module.Members["encode"], starlark.Tuple{value}, nil)
	if err != nil {
		return nil, Job(fmt.Errorf("%s(%q): value: %w", name, msg, err))
	}
	dec, err := starlark.Call(thread, json.Module.Members["decode"], starlark.Tuple{enc}, nil)
	if err != nil {
		return nil, Job(fmt.Errorf("%s(%q): value: %w", name, msg, err))
	}
	dec.Freeze()
	g := b.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.msgs[msg]; ok {
		return nil, Job(fmt.Errorf("%s(%q) in %s: already sent by %s", name, msg, b.name, m.from))
	}
	g.msgs[msg] = message{from: b.name, value: dec}
	g.changedLocked()
	return starlark.None, nil
}

// Wait is the wait builtin.
func Wait(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var msg string
	var timeout Timeout
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &msg, "timeout?", &timeout); err != nil {
		return nil, Job(err)
	}
	b, err := branchOf(thread, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := CallContext(thread, timeout.D())
	defer cancel()
	g := b.g
	for {
		g.mu.Lock()
		m, ok := g.msgs[msg]
		var running, gone []string
		for _, o := range g.names {
			switch {
			case o == b.name:
			case g.done[o]:
				gone = append(gone, o)
			default:
				running = append(running, o)
			}
		}
		ch := g.changed
		g.mu.Unlock()
		if ok {
			return m.value, nil
		}
		if len(running) == 0 && ctx.Err() == nil {
			return nil, Device(fmt.Errorf("%s(%q) in %s: not sent: %s returned without sending it", name, msg, b.name, strings.Join(gone, ", ")))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, waitErr(ctx, fmt.Errorf("%s(%q) in %s: not sent: %s did not send it", name, msg, b.name, strings.Join(slices.Concat(running, gone), ", ")))
		}
	}
}

// RoleModule returns module value v (a *starlarkstruct.Module, or one of
// its members) with every builtin bound to role: a call runs with the
// thread's env switched to the role's ([Env.OnRole]) and switched back
// after, so the module's own code is unchanged and acts on that device.
func RoleModule(role string, v starlark.Value) starlark.Value {
	switch m := v.(type) {
	case *starlarkstruct.Module:
		members := make(starlark.StringDict, len(m.Members))
		for k, mv := range m.Members {
			members[k] = RoleModule(role, mv)
		}
		return &starlarkstruct.Module{Name: m.Name, Members: members}
	case *starlark.Builtin:
		return starlark.NewBuiltin(m.Name(), func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			env := EnvOf(thread)
			re, ok := env.OnRole(role)
			if !ok {
				return nil, Job(fmt.Errorf("%s: this run has no role %q", m.Name(), role))
			}
			Attach(thread, re)
			defer Attach(thread, env)
			return m.CallInternal(thread, args, kwargs)
		})
	}
	return v
}
