package openwhisk

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A native Go action is the runtime binary zipped as "exec" for the
// actionloop proxy of apache/openwhisk-runtime-go (the action-golang
// images behind the go:1.x kinds). The proxy unzips the code, finds
// "exec" already compiled (an ELF file) and starts it; when the image
// sets OW_EXECUTION_ENV (the action-golang images do:
// openwhisk/action-golang-v1.NN) it first checks that the zip's
// "exec.env" holds the same string and refuses the action otherwise.

// ExecEnvForKind returns the execution environment the action-golang
// image of kind announces (OW_EXECUTION_ENV): "go:1.24" gives
// "openwhisk/action-golang-v1.24". It returns "" for other kinds.
func ExecEnvForKind(kind string) string {
	v, ok := strings.CutPrefix(kind, "go:")
	if !ok || v == "" || v == "default" {
		return ""
	}
	return "openwhisk/action-golang-v" + v
}

// NativeCode zips binary (the runtime built for linux/amd64, or the
// platform's architecture) as "exec", with "exec.env" holding execEnv
// when it is not empty, and returns it base64-encoded for Config.Code.
func NativeCode(binary []byte, execEnv string) (string, error) {
	if len(binary) < 4 || !bytes.Equal(binary[:4], []byte("\x7fELF")) {
		return "", errors.New("openwhisk: the native action's exec is not a Linux executable (build the runtime with GOOS=linux)")
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, mode uint32, data []byte) error {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Unix(0, 0).UTC()}
		h.SetMode(0o644)
		if mode != 0 {
			h.SetMode(0o755)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	if err := add("exec", 1, binary); err != nil {
		return "", fmt.Errorf("openwhisk: zip the native action: %w", err)
	}
	if execEnv != "" {
		if err := add("exec.env", 0, []byte(execEnv)); err != nil {
			return "", fmt.Errorf("openwhisk: zip the native action: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("openwhisk: zip the native action: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
