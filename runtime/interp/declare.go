package interp

import "github.com/basalt-lab/basalt/builtins"

// Declarations is the table of job, stage and cleanup for `basalt doc`,
// runtime/lint and the Params test. Declare predeclares the same table,
// bound to the plan it fills.
var Declarations = (&declState{plan: &Plan{}}).table()

// table registers job, stage and cleanup the way modules register their
// builtins: one entry with Params and Doc, run in the builtins envelope.
func (st *declState) table() *builtins.Table {
	return &builtins.Table{
		Name: "",
		Doc: `Declarations: the only calls with effect at a job file's top level; and try_call, to recover from a failed action.

Every timeout= (job, stage, cleanup and every builtin) has one meaning. It takes a duration string ("30s",
"2m"), a number of seconds or a time.duration, and must be positive: 0 or a negative value is an error
naming the function. Leaving it out (or None) means the deadline that applies anyway: for a builtin the
stage's remaining time, for a stage the job's, for job and cleanup their defaults. A builtin's timeout=
can only shorten the stage's deadline, never extend it.

A libraries.star file beside the job file declares git libraries, and may call nothing else:
library(name, git, commit) with commit a full SHA. Job files load them as load("@NAME//path.star", ...);
each is fetched once into the artifact cache and recorded with its commit in result.json's inputs.`,
		Members: []builtins.Builtin{
			{Name: "job", Params: `name, device_type=None, timeout="1h", params={}, artifacts=None, description="", health_check=False, devices=None`,
				Doc: "Declares the job, once per job file. params maps names to default values (string, int, float or bool); " +
					"`--param k=v` overrides them and stage functions read them as ctx.params.NAME. artifacts lists the params " +
					"that name files (default: kernel, initrd, dtb, image, rootfs when declared); `basalt check` verifies they " +
					"exist under the job directory or are http(s) URLs, and result.json records their sha256. health_check=True makes " +
					"it a health check (LAVA's): when it fails its device is in bad health, refused to every other job until a " +
					"health check passes. devices = {ROLE: TYPE} makes it a multi-device job instead of device_type: each role is " +
					"a device of that type (`basalt run --device ROLE=NAME` per role), all locked before anything runs; stage " +
					"functions act on one with ctx.devices.ROLE.ipmi, .power, .pxe, .sol, .target (its facts in ctx.devices.ROLE.device) " +
					"and run roles at once with parallel().",
				Fn: st.job},
			{Name: "stage", Params: `name, fn, timeout=None, retries=0, on_error=None`,
				Doc: "Declares a stage. Stages run in declaration order; fn(ctx) receives ctx.params, ctx.device, ctx.job, " +
					"ctx.stage, ctx.attempt and ctx.remaining() (time left in this stage). timeout may only be shorter than the " +
					"job's. retries=N re-runs the stage after an infrastructure or device error, within the job's remaining time. on_error=recover runs recover(ctx, error) " +
					"after every attempt that failed with an infrastructure or device error, the last one too, before any retry " +
					"(error as try_call's: class, message, builtin, pos), in a budget like an attempt's; it cannot un-fail the " +
					"stage (its return value is ignored) and its own failure ends the stage. Each run is a \"recovered\" " +
					"event and a record in result.json's recoveries (retry: whether another attempt followed).",
				Fn: st.stage},
			{Name: "cleanup", Params: `fn, timeout="2m"`,
				Doc: "Declares a cleanup function fn(ctx). Cleanup functions always run after the stages — on success, failure, " +
					"timeout, SIGINT and SIGTERM — in declaration order, each within its own budget.",
				Fn: st.cleanup},
			{Name: "try_call", Params: `fn, *args, **kwargs`, Doc: builtins.TryCallDoc, Fn: builtins.TryCall},
			{Name: "parallel", Params: builtins.ParallelParams, Doc: builtins.ParallelDoc, Action: true, Fn: builtins.Parallel},
			{Name: "sync", Params: builtins.SyncParams, Doc: builtins.SyncDoc, Action: true, Fn: builtins.Sync},
			{Name: "send", Params: builtins.SendParams, Doc: builtins.SendDoc, Action: true, Fn: builtins.Send},
			{Name: "wait", Params: builtins.WaitParams, Doc: builtins.WaitDoc, Action: true, Fn: builtins.Wait},
		},
	}
}
