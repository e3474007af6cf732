// Package fnproc prepares the processes that run functions: the commands
// of pkg/cmdhost and the Python interpreters of pkg/pyhost. A Setup holds
// what they start with.
//
// # Environment
//
// A function process never inherits the runtime's environment. It starts
// from fn.BaseEnv: the variables of fn.EnvAllowed (PATH, HOME, USER,
// LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR) and those the operator names
// in Config.PassEnv (runtime --pass-env), never a SKEIN_* setting. The
// host adds its own variables and the job's extra_env on top. So the
// bus URL with its password and the storage keys, which the runtime
// itself needs, are not visible to the code it runs.
//
// # User
//
// Config.RunAs names the user function processes run as. For another
// user than the runtime's own (which takes a runtime running as root),
// SysProcAttr carries that user's credential (uid, gid and its groups,
// none of root's), and New makes a directory tree for it under
// Config.Dir:
//
//	skein-fn-XXXX/        0711 root: passed through, not listed
//	  work/               0700 the user: working directory, TMPDIR, HOME
//	                       when the user's own home does not exist
//	  shared/             0755 root: the Python host's script and the
//	                       shipped modules, readable, not writable
//
// HOME, USER, LOGNAME and TMPDIR then name that user and its work
// directory. Close removes the tree.
package fnproc
