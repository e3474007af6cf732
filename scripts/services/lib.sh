# Shared by the service scripts (sourced, not run).

free_port() {
	# A port below the kernel's ephemeral range (where outgoing
	# connections take their source ports, which a probe cannot see
	# coming), that binds now.
	python3 - <<'PY'
import random, socket
lo = 32768
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    pass
top = lo if lo > 21000 else 61000
for _ in range(500):
    p = random.randrange(20000, top)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    raise SystemExit("no free port found")
PY
}
