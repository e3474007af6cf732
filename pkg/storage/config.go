package storage

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Secret is a credential. It formats as "[redacted]" with %s, %v and %#v
// and in JSON, so a Config can be logged or printed safely.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts under %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalJSON redacts the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// UnmarshalJSON reads the secret from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	v, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("secret must be a JSON string")
	}
	*s = Secret(v)
	return nil
}

// Reveal returns the secret itself, for the code that authenticates.
func (s Secret) Reveal() string { return string(s) }

// Default values.
const (
	DefaultInlineLimit  = 256 << 10 // bytes
	DefaultRegion       = "us-east-1"
	DefaultIAMEndpoint  = "https://iam.cloud.ibm.com/identity/token"
	DefaultHTTPTimeout  = 30 * time.Second
	DefaultArtifactsURL = "local://skein-artifacts/skein-jobs/"
)

// COSConfig configures the IBM COS / S3 store used for cos:// and s3://
// URLs. Authenticate with HMAC keys (AccessKey and SecretKey) or with an
// IBM Cloud IAM API key (APIKey, and ServiceInstanceID for bucket
// creation), not both. With neither, requests go unsigned (public
// buckets).
type COSConfig struct {
	// Endpoint is the service URL, e.g.
	// https://s3.us-south.cloud-object-storage.appdomain.cloud or
	// http://127.0.0.1:7070. Required for cos:// and s3:// URLs.
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	// PathStyle addresses buckets as endpoint/bucket instead of
	// bucket.endpoint (needed by most S3-compatible servers).
	PathStyle         bool   `json:"path_style"`
	AccessKey         string `json:"access_key"`
	SecretKey         Secret `json:"secret_key"`
	APIKey            Secret `json:"api_key"`
	ServiceInstanceID string `json:"service_instance_id"`
	// IAMEndpoint is the IBM IAM token endpoint.
	IAMEndpoint string `json:"iam_endpoint"`
}

// Config configures storage: the stores and where job artifacts go.
type Config struct {
	// LocalRoot is the directory that holds the buckets of local://bucket/key
	// URLs (one subdirectory per bucket).
	LocalRoot string `json:"local_root"`
	// ArtifactsURL is the bucket (and optional prefix, ending in '/') under
	// which each job keeps its artifacts in <prefix><job>/…; a local, cos
	// or s3 URL.
	ArtifactsURL string `json:"artifacts_url"`
	// CreateArtifactsBucket creates the artifacts bucket on first use if
	// it does not exist.
	CreateArtifactsBucket bool `json:"create_artifacts_bucket"`
	// InlineLimit is the size in bytes above which task inputs and results
	// travel by reference through the artifacts store instead of inside
	// bus messages.
	InlineLimit int64 `json:"inline_limit"`
	// HTTPTimeout bounds one request of the http(s) store (the response
	// headers; a body may stream longer).
	HTTPTimeout time.Duration `json:"http_timeout"`
	COS         COSConfig     `json:"cos"`
}

// DefaultConfig returns the configuration of the embedded mode: a local
// root under the user's cache directory (or the temporary directory),
// artifacts in its skein-artifacts bucket, a 256 KiB inline limit.
func DefaultConfig() Config {
	root := filepath.Join(os.TempDir(), "skein-storage")
	if d, err := os.UserCacheDir(); err == nil {
		root = filepath.Join(d, "skein", "storage")
	}
	return Config{
		LocalRoot:             root,
		ArtifactsURL:          DefaultArtifactsURL,
		CreateArtifactsBucket: true,
		InlineLimit:           DefaultInlineLimit,
		HTTPTimeout:           DefaultHTTPTimeout,
		COS: COSConfig{
			Region:      DefaultRegion,
			IAMEndpoint: DefaultIAMEndpoint,
		},
	}
}

// Environment variables read by FromEnv.
const (
	EnvLocalRoot       = "SKEIN_STORAGE_LOCAL_ROOT"
	EnvArtifacts       = "SKEIN_STORAGE_ARTIFACTS"
	EnvCreateBucket    = "SKEIN_STORAGE_CREATE_BUCKET"
	EnvInlineLimit     = "SKEIN_STORAGE_INLINE_LIMIT"
	EnvHTTPTimeout     = "SKEIN_STORAGE_HTTP_TIMEOUT"
	EnvEndpoint        = "SKEIN_STORAGE_ENDPOINT"
	EnvRegion          = "SKEIN_STORAGE_REGION"
	EnvPathStyle       = "SKEIN_STORAGE_PATH_STYLE"
	EnvAccessKey       = "SKEIN_STORAGE_ACCESS_KEY"
	EnvSecretKey       = "SKEIN_STORAGE_SECRET_KEY"
	EnvAPIKey          = "SKEIN_STORAGE_API_KEY"
	EnvServiceInstance = "SKEIN_STORAGE_SERVICE_INSTANCE_ID"
	EnvIAMEndpoint     = "SKEIN_STORAGE_IAM_ENDPOINT"
)

// FromEnv overlays the SKEIN_STORAGE_* environment variables on c (unset
// variables leave fields alone) and returns the result. A malformed value
// is an error naming the variable.
func (c Config) FromEnv() (Config, error) {
	return c.fromLookup(os.LookupEnv)
}

// settingError is a malformed value of one setting.
type settingError struct{ name, value, want string }

func (e *settingError) Error() string { return fmt.Sprintf("%s=%q: %s", e.name, e.value, e.want) }

// EnvNames lists the SKEIN_STORAGE_* variables FromEnv reads.
func EnvNames() []string {
	return []string{EnvLocalRoot, EnvArtifacts, EnvCreateBucket, EnvInlineLimit, EnvHTTPTimeout, EnvEndpoint,
		EnvRegion, EnvPathStyle, EnvAccessKey, EnvSecretKey, EnvAPIKey, EnvServiceInstance, EnvIAMEndpoint}
}

// CheckSetting parses value as FromEnv parses the variable name (one of
// EnvNames) and returns what is wrong with it, without naming the
// variable: for a config file that names the setting its own way.
func CheckSetting(name, value string) error {
	_, err := DefaultConfig().fromLookup(func(n string) (string, bool) { return value, n == name })
	var se *settingError
	if errors.As(err, &se) {
		return fmt.Errorf("%q: %s", se.value, se.want)
	}
	return err
}

func (c Config) fromLookup(lookup func(string) (string, bool)) (Config, error) {
	var errs []error
	str := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = v
		}
	}
	secret := func(name string, dst *Secret) {
		if v, ok := lookup(name); ok {
			*dst = Secret(v)
		}
	}
	boolean := func(name string, dst *bool) {
		if v, ok := lookup(name); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, &settingError{name, v, "want true or false"})
				return
			}
			*dst = b
		}
	}
	str(EnvLocalRoot, &c.LocalRoot)
	str(EnvArtifacts, &c.ArtifactsURL)
	boolean(EnvCreateBucket, &c.CreateArtifactsBucket)
	if v, ok := lookup(EnvInlineLimit); ok {
		n, err := ParseSize(v)
		if err != nil {
			errs = append(errs, &settingError{EnvInlineLimit, v, err.Error()})
		} else {
			c.InlineLimit = n
		}
	}
	if v, ok := lookup(EnvHTTPTimeout); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, &settingError{EnvHTTPTimeout, v, "want a duration such as 30s"})
		} else {
			c.HTTPTimeout = d
		}
	}
	str(EnvEndpoint, &c.COS.Endpoint)
	str(EnvRegion, &c.COS.Region)
	boolean(EnvPathStyle, &c.COS.PathStyle)
	str(EnvAccessKey, &c.COS.AccessKey)
	secret(EnvSecretKey, &c.COS.SecretKey)
	secret(EnvAPIKey, &c.COS.APIKey)
	str(EnvServiceInstance, &c.COS.ServiceInstanceID)
	str(EnvIAMEndpoint, &c.COS.IAMEndpoint)
	return c, errors.Join(errs...)
}

// ParseSize parses a byte count: a plain integer or one with a K, M, G
// suffix (binary: KiB, MiB, GiB; "256K", "256KiB" and "262144" are equal).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	up := strings.ToUpper(t)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(up, suf.s) {
			mult = suf.m
			t = strings.TrimSpace(t[:len(t)-len(suf.s)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a non-negative byte count such as 262144 or 256KiB")
	}
	return n * mult, nil
}

// Validate reports every bad field by name.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("storage config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.LocalRoot == "" {
		bad("local_root", "must be set")
	} else if !filepath.IsAbs(c.LocalRoot) {
		bad("local_root", "must be an absolute path, got %q", c.LocalRoot)
	}
	if c.ArtifactsURL == "" {
		bad("artifacts_url", "must be set (e.g. %s)", DefaultArtifactsURL)
	} else if u, err := ParseURL(c.ArtifactsURL); err != nil {
		bad("artifacts_url", "%v", err)
	} else if u.IsHTTP() {
		bad("artifacts_url", "must be a local, cos or s3 URL (http is read-only), got %q", Redact(c.ArtifactsURL))
	} else if !u.IsPrefix() {
		bad("artifacts_url", "must name a bucket or a prefix ending in '/', got %q", c.ArtifactsURL)
	}
	if c.InlineLimit < 0 {
		bad("inline_limit", "must be >= 0, got %d", c.InlineLimit)
	}
	if c.HTTPTimeout <= 0 {
		bad("http_timeout", "must be > 0, got %s", c.HTTPTimeout)
	}
	if c.COS.Endpoint != "" {
		if p, err := url.Parse(c.COS.Endpoint); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("cos.endpoint", "must be an http(s) URL such as https://s3.us-south.cloud-object-storage.appdomain.cloud, got %q", Redact(c.COS.Endpoint))
		} else if p.User != nil {
			bad("cos.endpoint", "must not carry credentials")
		}
	}
	if c.COS.Region == "" {
		bad("cos.region", "must be set (e.g. %s)", DefaultRegion)
	}
	hmac := c.COS.AccessKey != "" || c.COS.SecretKey != ""
	if c.COS.AccessKey != "" && c.COS.SecretKey == "" {
		bad("cos.secret_key", "must be set with cos.access_key")
	}
	if c.COS.AccessKey == "" && c.COS.SecretKey != "" {
		bad("cos.access_key", "must be set with cos.secret_key")
	}
	if hmac && c.COS.APIKey != "" {
		bad("cos.api_key", "set either HMAC keys (access_key, secret_key) or an IAM api_key, not both")
	}
	if c.COS.APIKey != "" && c.COS.IAMEndpoint == "" {
		bad("cos.iam_endpoint", "must be set with cos.api_key (e.g. %s)", DefaultIAMEndpoint)
	}
	return errors.Join(errs...)
}

// String describes c without its credentials.
func (c Config) String() string {
	auth := "anonymous"
	switch {
	case c.COS.APIKey != "":
		auth = "iam-api-key"
	case c.COS.AccessKey != "":
		auth = "hmac"
	}
	return fmt.Sprintf("storage{local_root=%s artifacts=%s inline_limit=%d cos.endpoint=%s cos.region=%s cos.path_style=%t cos.auth=%s}",
		c.LocalRoot, Redact(c.ArtifactsURL), c.InlineLimit, Redact(c.COS.Endpoint), c.COS.Region, c.COS.PathStyle, auth)
}

// String describes c without its credentials.
func (c COSConfig) String() string {
	auth := "anonymous"
	switch {
	case c.APIKey != "":
		auth = "iam-api-key"
	case c.AccessKey != "":
		auth = "hmac"
	}
	return fmt.Sprintf("cos{endpoint=%s region=%s path_style=%t auth=%s}", Redact(c.Endpoint), c.Region, c.PathStyle, auth)
}
