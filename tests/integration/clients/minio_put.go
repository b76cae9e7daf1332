// minio_put uploads one object with minio-go (Debian's
// golang-github-minio-minio-go-v7-dev), which over plain HTTP signs a single
// PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: aws-chunked, 64 KiB chunks,
// each with its own signature. Used by tests/integration/test_s3_ops.py as a
// real client of that encoding (botocore and awscli never send it).
//
//	minio_put ENDPOINT ACCESS SECRET BUCKET KEY FILE|- SIZE
//
// Reads SIZE bytes from FILE (or stdin), prints the ETag on success and
// exits 1 with the S3 error code on failure.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	if len(os.Args) != 8 {
		fmt.Fprintln(os.Stderr, "usage: minio_put ENDPOINT ACCESS SECRET BUCKET KEY FILE|- SIZE")
		os.Exit(2)
	}
	size, err := strconv.ParseInt(os.Args[7], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad size:", err)
		os.Exit(2)
	}
	// a plain reader: minio-go must not see (and try to seek) a file
	var in io.Reader = struct{ io.Reader }{os.Stdin}
	if os.Args[6] != "-" {
		f, err := os.Open(os.Args[6])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	c, err := minio.New(os.Args[1], &minio.Options{
		Creds:  credentials.NewStaticV4(os.Args[2], os.Args[3], ""),
		Secure: false,
		Region: "us-east-1",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	info, err := c.PutObject(context.Background(), os.Args[4], os.Args[5], in, size,
		minio.PutObjectOptions{ContentType: "application/x-test",
			UserMetadata: map[string]string{"origin": "minio-go"}})
	if err != nil {
		fmt.Println(minio.ToErrorResponse(err).Code)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(info.ETag)
}
