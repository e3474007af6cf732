"""A stand-in for the submit binary, for tests of what the provider passes to it.

It appends {argv, env (SKEIN_* and STANDIN_PROBE), stdin} as one JSON line to
$STANDIN_RECORD and answers like submit: --no-wait prints a job id, wait
prints null, result prints $STANDIN_RESULT, anything else prints
{"argv": ..., "stdin": ...} unless $STANDIN_STDOUT is set. $STANDIN_EXIT and
$STANDIN_STDERR make it fail like submit does.
"""
import json
import os
import sys

argv = sys.argv[1:]
data = sys.stdin.read() if "-" in argv else ""
rec = {
    "argv": argv,
    "env": {k: v for k, v in os.environ.items() if k.startswith("SKEIN_") or k == "STANDIN_PROBE"},
    "stdin": json.loads(data) if data else None,
}
with open(os.environ["STANDIN_RECORD"], "a") as f:
    f.write(json.dumps(rec) + "\n")
if os.environ.get("STANDIN_STDERR"):
    sys.stderr.write(os.environ["STANDIN_STDERR"] + "\n")
code = int(os.environ.get("STANDIN_EXIT", "0"))
if code:
    sys.exit(code)
sys.stderr.write("progress: 1/1 done\n")
if "--no-wait" in argv:
    print(json.dumps("job-123"))
elif argv[0] == "wait":
    print("null")
elif argv[0] == "result":
    print(os.environ.get("STANDIN_RESULT", "null"))
elif os.environ.get("STANDIN_STDOUT"):
    print(os.environ["STANDIN_STDOUT"])
else:
    print(json.dumps({"argv": argv, "stdin": rec["stdin"]}))
