package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/bus/dial"
	"github.com/skeinrun/skein/pkg/coordinator"
	"github.com/skeinrun/skein/pkg/trigger"
)

// Triggers (pkg/trigger): the coordinator service runs them; `submit
// trigger create|list|delete` manages them through the coordinators' API.

// configTriggers reads the config file's triggers: list (each entry as
// `submit trigger create --def` takes it).
func configTriggers(fc *fileConfig) ([]trigger.Def, error) {
	var out []trigger.Def
	for i, t := range fc.Triggers {
		b, err := json.Marshal(t)
		if err != nil {
			return nil, usagef("config file: trigger %d: %v", i+1, err)
		}
		var d trigger.Def
		if err := strictJSON(b, &d); err != nil {
			return nil, usagef("config file: trigger %d: %v", i+1, err)
		}
		if err := d.Validate(); err != nil {
			return nil, usagef("config file: %v", err)
		}
		out = append(out, d)
	}
	return out, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// startTriggers starts the trigger runner of a coordinator that has
// joined its namespace. Sources without a URL of their own use the
// coordinator's bus URL and credentials.
func startTriggers(ctx context.Context, c *coordinator.Coordinator, b bus.Bus, busURL string, creds dial.Credentials, defs []trigger.Def, log *slog.Logger) (*trigger.Runner, error) {
	ns, kind := "skein", trigger.BusNATS
	if strings.HasPrefix(busURL, "amqp://") || strings.HasPrefix(busURL, "amqps://") {
		kind = trigger.BusAMQP
	}
	var plain []string
	for _, p := range strings.Split(busURL, ",") {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		if v := u.Query().Get("ns"); v != "" {
			ns = v
		}
		u.RawQuery = ""
		plain = append(plain, u.String())
	}
	r := trigger.New(trigger.Config{
		Bus: b, Coordinator: c, ErrJobExists: coordinator.ErrJobExists, ErrInvalid: coordinator.ErrInvalid, Verify: c.SignedByUs, Sign: c.Sign, Result: c.JobResult, Namespace: ns, BusKind: kind, Triggers: defs,
		Logger: log.With("component", "trigger"),
		DialNATS: func(ctx context.Context, u string) (*nats.Conn, error) {
			own := u != ""
			if !own {
				u = strings.Join(plain, ",")
			}
			if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
				return nil, fmt.Errorf("a NATS source on a non-NATS bus needs its own url")
			}
			opts := []nats.Option{nats.Name("skein-coordinator-trigger"), nats.MaxReconnects(-1)}
			if !own {
				// The coordinator's reply inbox: the only one its user
				// may read on a server configured from deploy/nats.
				inbox := creds.InboxPrefix
				if inbox == "" {
					inbox = "_INBOX." + ns + "." + dial.RoleCoordinator
				}
				opts = append(opts, nats.CustomInboxPrefix(inbox))
				switch {
				case creds.CredsFile != "":
					opts = append(opts, nats.UserCredentials(creds.CredsFile))
				case creds.Token != "":
					opts = append(opts, nats.Token(creds.Token))
				case creds.User != "" || creds.Password != "":
					// As bus/dial does: the user named in the URL, the
					// password from the credentials, and no user info
					// left in the URL (nats.go would send it as a token).
					user, bare := creds.User, make([]string, len(plain))
					for i, p := range plain {
						pu, err := url.Parse(p)
						if err != nil {
							return nil, err
						}
						if user == "" {
							user = pu.User.Username()
						}
						pu.User = nil
						bare[i] = pu.String()
					}
					u = strings.Join(bare, ",")
					opts = append(opts, nats.UserInfo(user, creds.Password))
				case creds.NKeyFile != "":
					o, err := nats.NkeyOptionFromSeed(creds.NKeyFile)
					if err != nil {
						return nil, err
					}
					opts = append(opts, o)
				}
				if creds.TLSCA != "" {
					opts = append(opts, nats.RootCAs(creds.TLSCA))
				}
				if creds.TLSCert != "" {
					opts = append(opts, nats.ClientCert(creds.TLSCert, creds.TLSKey))
				}
			}
			return nats.Connect(u, opts...)
		},
		DialAMQP: func(ctx context.Context, u string) (*amqp.Connection, error) {
			own := u != ""
			if !own {
				u = plain[0]
			}
			if !strings.HasPrefix(u, "amqp://") && !strings.HasPrefix(u, "amqps://") {
				return nil, fmt.Errorf("an AMQP source on a non-AMQP bus needs its own url")
			}
			cfg := amqp.Config{Properties: amqp.Table{"connection_name": "skein-coordinator-trigger"}}
			if !own && (creds.User != "" || creds.Password != "") {
				pu, err := url.Parse(u)
				if err != nil {
					return nil, err
				}
				user := creds.User
				if user == "" {
					user = pu.User.Username()
				}
				cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: user, Password: creds.Password}}
			}
			return amqp.DialConfig(u, cfg)
		},
	})
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Start(sctx); err != nil {
		r.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Jobs run without triggers: a coordinator whose bus user lacks
		// the trigger rights (deploy/ before triggers) still serves.
		log.Error("triggers are off: they cannot be read or recorded (the coordinator's bus user needs the rights of deploy/nats or deploy/rabbitmq for trigger records)", "err", err)
		return nil, nil
	}
	return r, nil
}

const triggerUsage = `usage: submit trigger create --def JSON|@FILE   record a trigger (replacing one of its name)
       submit trigger list                     the namespace's triggers, one JSON line each
       submit trigger delete NAME              delete a trigger
A definition: {"name":"wc","source":{"nats":"skein.notify.s3","format":"s3"},
               "job":{"kind":"map","function":"wordcount"},"batch":{"count":1}}
A source is one of {"nats":SUBJECT}, {"amqp":QUEUE}, {"jobs":"trigger:NAME"} and
{"webhook":NAME} (POSTs to a coordinator's --webhook-listen at /webhook/NAME).
(docs/pipelines.md#triggers).`

func runTrigger(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(env.Stderr, triggerUsage)
		if len(args) == 0 {
			return usagef("trigger takes create, list or delete")
		}
		return flag.ErrHelp
	}
	op, rest := args[0], args[1:]
	o := &Options{}
	fs := newFlagSet("trigger "+op, env)
	commonFlags(fs, o)
	var def string
	if op == "create" {
		fs.StringVar(&def, "def", "", "the trigger's definition: JSON, or @FILE")
	}
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, env)
			return err
		}
		return usagef("%v", err)
	}
	req := trigger.Request{Op: op}
	switch op {
	case "create":
		if def == "" || len(pos) != 0 {
			return usagef("trigger create takes --def JSON|@FILE")
		}
		b := []byte(def)
		if f, ok := strings.CutPrefix(def, "@"); ok {
			if b, err = os.ReadFile(f); err != nil {
				return usagef("--def: %v", err)
			}
		}
		var d trigger.Def
		if err := strictJSON(b, &d); err != nil {
			return usagef("--def: %v", err)
		}
		if err := d.Validate(); err != nil {
			return usagef("%v", err)
		}
		req.Def = &d
	case "list":
		if len(pos) != 0 {
			return usagef("trigger list takes no argument")
		}
	case "delete":
		if len(pos) != 1 {
			return usagef("trigger delete takes a trigger's name")
		}
		req.Name = pos[0]
	default:
		return usagef("unknown trigger command %q (want create, list or delete)", op)
	}
	fc, err := loadConfig(o.Config, env.Getenv)
	if err != nil {
		return err
	}
	fc.apply(&o.Bus, nil, env.Getenv)
	if o.Bus == "" {
		return usagef("trigger needs a bus (--bus or SKEIN_BUS): triggers run in a coordinator service")
	}
	log, err := o.Logging.Logger(env.Stderr)
	if err != nil {
		return usagef("%v", err)
	}
	b, err := o.openBus(ctx, env, log)
	if err != nil {
		return err
	}
	defer b.Close()
	resp, err := trigger.Call(ctx, b, req)
	if err != nil {
		return err // no coordinator: client.ErrNoCoordinator, exit 5
	}
	for _, d := range resp.Triggers {
		if err := printJSON(env.Stdout, d); err != nil {
			return err
		}
	}
	return nil
}
