package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/IBM/ibm-cos-sdk-go/aws"
	"github.com/IBM/ibm-cos-sdk-go/aws/awserr"
	"github.com/IBM/ibm-cos-sdk-go/aws/credentials"
	"github.com/IBM/ibm-cos-sdk-go/aws/credentials/ibmiam"
	"github.com/IBM/ibm-cos-sdk-go/aws/session"
	"github.com/IBM/ibm-cos-sdk-go/service/s3"
)

// COS is a Store on IBM Cloud Object Storage or any S3-compatible endpoint,
// through the IBM COS SDK.
type COS struct {
	client  *s3.S3
	scheme  string
	secrets []string // scrubbed from every error message
	log     *slog.Logger
}

// NewCOS returns a store for cfg. scheme ("cos" or "s3") is used in the
// URLs that errors name. log may be nil.
func NewCOS(cfg COSConfig, scheme string, log *slog.Logger) (*COS, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("storage: %w: %s:// URLs need an endpoint (cos.endpoint, %s)", ErrNoConfig, scheme, EnvEndpoint)
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	ac := aws.NewConfig().
		WithEndpoint(cfg.Endpoint).
		WithRegion(region).
		WithS3ForcePathStyle(cfg.PathStyle).
		WithHTTPClient(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}).
		WithMaxRetries(3)
	switch {
	case cfg.APIKey != "":
		iam := cfg.IAMEndpoint
		if iam == "" {
			iam = DefaultIAMEndpoint
		}
		ac = ac.WithCredentials(ibmiam.NewStaticCredentials(aws.NewConfig(), iam, cfg.APIKey.Reveal(), cfg.ServiceInstanceID))
	case cfg.AccessKey != "":
		ac = ac.WithCredentials(credentials.NewStaticCredentials(cfg.AccessKey, cfg.SecretKey.Reveal(), ""))
	default:
		ac = ac.WithCredentials(credentials.AnonymousCredentials)
	}
	sess, err := session.NewSessionWithOptions(session.Options{Config: *ac, SharedConfigState: session.SharedConfigDisable})
	if err != nil {
		return nil, fmt.Errorf("storage: %s endpoint %s: %v", scheme, Redact(cfg.Endpoint), err)
	}
	c := &COS{client: s3.New(sess), scheme: scheme, log: log}
	for _, s := range []string{cfg.AccessKey, cfg.SecretKey.Reveal(), cfg.APIKey.Reveal()} {
		if s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	return c, nil
}

func (c *COS) url(bucket, key string) string {
	return URL{Scheme: c.scheme, Bucket: bucket, Key: key}.String()
}

func (c *COS) scrub(s string) string {
	for _, sec := range c.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// mapErr turns an SDK error into a sentinel-wrapping error without
// credentials.
func (c *COS) mapErr(ctx context.Context, op, bucket, key string, err error) error {
	u := c.url(bucket, key)
	if ctx.Err() != nil {
		return opErr(op, u, ctx.Err())
	}
	var ae awserr.Error
	if !errors.As(err, &ae) {
		return opErr(op, u, errors.New(c.scrub(err.Error())))
	}
	status := 0
	var rf awserr.RequestFailure
	if errors.As(err, &rf) {
		status = rf.StatusCode()
	}
	code, msg := ae.Code(), c.scrub(ae.Message())
	detail := code
	if msg != "" {
		detail += ": " + msg
	}
	switch {
	case code == s3.ErrCodeNoSuchBucket:
		return opErr(op, u, ErrNoBucket)
	case code == s3.ErrCodeNoSuchKey:
		return opErr(op, u, ErrNotFound)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied" ||
		code == "InvalidToken" || code == "ExpiredToken" || strings.HasPrefix(code, "IbmApiKey") ||
		strings.HasSuffix(code, "UserNotFound") || // versitygw: unknown access key (with a 404)
		status == http.StatusForbidden:
		return opErr(op, u, detailed(ErrAccessDenied, detail))
	case status == http.StatusNotFound:
		return opErr(op, u, ErrNotFound)
	case code == "RequestError" || code == "SerializationError":
		// Connection failures: the original error says which address.
		if oe := ae.OrigErr(); oe != nil {
			detail = code + ": " + c.scrub(oe.Error())
		}
	}
	return opErr(op, u, errors.New(detail))
}

// probe404 explains a 404 without a body (HEAD requests carry no error
// code): a one-key listing of the bucket tells a missing bucket or bad
// credentials from a missing key.
func (c *COS) probe404(ctx context.Context, op, bucket, key string) error {
	_, err := c.client.ListObjectsV2WithContext(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int64(1), Prefix: aws.String(key)})
	if err != nil {
		return c.mapErr(ctx, op, bucket, key, err)
	}
	return opErr(op, c.url(bucket, key), ErrNotFound)
}

// Get implements Store.
func (c *COS) Get(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	return c.get(ctx, bucket, key, "", off, n)
}

// GetVersion implements VersionGetter: the request carries If-Match, and
// the store answers 412 when the object's ETag is no longer etag.
func (c *COS) GetVersion(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	if err := checkPin(c.url(bucket, key), etag); err != nil {
		return nil, err
	}
	return c.get(ctx, bucket, key, etag, off, n)
}

func (c *COS) get(ctx context.Context, bucket, key, etag string, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, opErr("get", c.url(bucket, key), detailed(ErrInvalid, fmt.Sprintf("negative offset %d", off)))
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if etag != "" {
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	switch {
	case n == 0:
		return empty(), nil
	case n > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := c.client.GetObjectWithContext(ctx, in)
	if err != nil {
		var rf awserr.RequestFailure
		if errors.As(err, &rf) && rf.StatusCode() == http.StatusRequestedRangeNotSatisfiable {
			return empty(), nil // off at or past the end
		}
		if etag != "" && errors.As(err, &rf) && rf.StatusCode() == http.StatusPreconditionFailed {
			return nil, opErr("get", c.url(bucket, key), detailed(ErrChanged, "its ETag is no longer "+etag))
		}
		return nil, c.mapErr(ctx, "get", bucket, key, err)
	}
	return out.Body, nil
}

// Put implements Store. A reader of unknown size (size < 0) is buffered.
func (c *COS) Put(ctx context.Context, bucket, key string, r io.Reader, size int64) error {
	var body io.ReadSeeker
	if rs, ok := r.(io.ReadSeeker); ok && size >= 0 {
		body = rs
	} else {
		b, err := io.ReadAll(r)
		if err != nil {
			return opErr("put", c.url(bucket, key), err)
		}
		if size >= 0 && int64(len(b)) != size {
			return opErr("put", c.url(bucket, key), detailed(ErrInvalid, fmt.Sprintf("read %d bytes, expected %d", len(b), size)))
		}
		body, size = bytes.NewReader(b), int64(len(b))
	}
	_, err := c.client.PutObjectWithContext(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return c.mapErr(ctx, "put", bucket, key, err)
	}
	c.log.Debug("put object", "url", c.url(bucket, key), "size", size)
	return nil
}

// Head implements Store.
func (c *COS) Head(ctx context.Context, bucket, key string) (Info, error) {
	out, err := c.client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var rf awserr.RequestFailure
		if errors.As(err, &rf) && rf.StatusCode() == http.StatusNotFound {
			return Info{}, c.probe404(ctx, "head", bucket, key)
		}
		return Info{}, c.mapErr(ctx, "head", bucket, key, err)
	}
	return Info{Key: key, Size: aws.Int64Value(out.ContentLength), Modified: aws.TimeValue(out.LastModified), ETag: strongETag(aws.StringValue(out.ETag))}, nil
}

// List implements Store; it follows continuation tokens to the end.
// Keys ending in '/' (folder markers) are left out.
func (c *COS) List(ctx context.Context, bucket, prefix string) ([]Info, error) {
	var out []Info
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	err := c.client.ListObjectsV2PagesWithContext(ctx, in, func(page *s3.ListObjectsV2Output, last bool) bool {
		for _, o := range page.Contents {
			k := aws.StringValue(o.Key)
			if strings.HasSuffix(k, "/") {
				continue
			}
			var mod time.Time
			if o.LastModified != nil {
				mod = *o.LastModified
			}
			out = append(out, Info{Key: k, Size: aws.Int64Value(o.Size), Modified: mod, ETag: strongETag(aws.StringValue(o.ETag))})
		}
		return true
	})
	if err != nil {
		return nil, c.mapErr(ctx, "list", bucket, prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (c *COS) Delete(ctx context.Context, bucket, key string) error {
	_, err := c.client.DeleteObjectWithContext(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var rf awserr.RequestFailure
		if errors.As(err, &rf) && rf.StatusCode() == http.StatusNotFound {
			var ae awserr.Error
			if errors.As(err, &ae) && ae.Code() == s3.ErrCodeNoSuchBucket {
				return opErr("delete", c.url(bucket, key), ErrNoBucket)
			}
			return nil
		}
		return c.mapErr(ctx, "delete", bucket, key, err)
	}
	return nil
}

// MakeBucket implements BucketMaker. A bucket that already exists and is
// owned by the caller is not an error.
func (c *COS) MakeBucket(ctx context.Context, bucket string) error {
	_, err := c.client.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		var ae awserr.Error
		if errors.As(err, &ae) && ae.Code() == s3.ErrCodeBucketAlreadyOwnedByYou {
			return nil
		}
		return c.mapErr(ctx, "make-bucket", bucket, "", err)
	}
	return nil
}
