// The HTTP load generator of benchmarks/gateway.py: N connections, each sending the same
// POST back to back (HTTP/1.1 keep-alive), for a warm-up and then a measured window.
// Written in Go (standard library only) because a Python client at 64 connections is
// slower than the server it measures on a 2-core machine; and on raw connections with
// the request built once, because net/http's client cost about as much CPU per request
// as the server's do-nothing endpoint. It reports its own CPU use, so the table shows
// it was not the limit.
//
//	go build -o gateway_load benchmarks/gateway_load.go
//	gateway_load -url http://127.0.0.1:8080/async/t -body FILE -connections 64 -seconds 5
//
// Prints one JSON object: requests in the window, their statuses, p50/p99 latency (ms),
// the window's length, and the CPU seconds this process used in it.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type result struct {
	Requests   int            `json:"requests"`
	Statuses   map[string]int `json:"statuses"`
	Errors     int            `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	Seconds    float64        `json:"seconds"`
	P50Ms      float64        `json:"p50_ms"`
	P99Ms      float64        `json:"p99_ms"`
	CPUSeconds float64        `json:"cpu_seconds"`
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

// request is the whole request, built once: a fixed Content-Length, or (chunked) the
// body in chunks of 16 KiB, as a client streaming its records would send it.
func request(target *url.URL, contentType string, body []byte, chunked bool) []byte {
	var out bytes.Buffer
	fmt.Fprintf(&out, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n",
		target.RequestURI(), target.Host, contentType)
	if !chunked {
		fmt.Fprintf(&out, "Content-Length: %d\r\n\r\n", len(body))
		out.Write(body)
		return out.Bytes()
	}
	out.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	for len(body) > 0 {
		size := len(body)
		if size > 16384 {
			size = 16384
		}
		fmt.Fprintf(&out, "%x\r\n", size)
		out.Write(body[:size])
		out.WriteString("\r\n")
		body = body[size:]
	}
	out.WriteString("0\r\n\r\n")
	return out.Bytes()
}

var errMalformed = errors.New("malformed HTTP answer")

// readAnswer reads one HTTP/1.1 answer whole (Content-Length or chunked) and returns
// its status.
func readAnswer(reader *bufio.Reader) (int, error) {
	line, err := reader.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, errMalformed
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errMalformed
	}
	length, chunked := -1, false
	for {
		line, err = reader.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		lower := bytes.ToLower(line)
		if bytes.HasPrefix(lower, []byte("content-length:")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(lower[15:])))
			if err != nil {
				return 0, errMalformed
			}
		} else if bytes.HasPrefix(lower, []byte("transfer-encoding:")) {
			chunked = bytes.Contains(lower, []byte("chunked"))
		}
	}
	if !chunked {
		if length > 0 {
			_, err = reader.Discard(length)
		}
		return status, err
	}
	for {
		line, err = reader.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return 0, errMalformed
		}
		if size == 0 {
			_, err = reader.ReadSlice('\n') // the empty line after the last chunk
			return status, err
		}
		if _, err = reader.Discard(int(size) + 2); err != nil {
			return 0, err
		}
	}
}

// exchange sends one request on the connection and reads its answer; a streaming
// request is written while its answer is read, as a streaming client would.
func exchange(conn net.Conn, reader *bufio.Reader, raw []byte, chunked bool) (int, error) {
	if !chunked {
		if _, err := conn.Write(raw); err != nil {
			return 0, err
		}
		return readAnswer(reader)
	}
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(raw)
		written <- err
	}()
	status, err := readAnswer(reader)
	if writeErr := <-written; err == nil {
		err = writeErr
	}
	return status, err
}

func main() {
	target := flag.String("url", "", "the URL to POST to")
	bodyFile := flag.String("body", "", "a file holding the request body")
	contentType := flag.String("content-type", "text/plain", "the Content-Type header")
	connections := flag.Int("connections", 64, "concurrent connections")
	warmup := flag.Float64("warmup", 1, "seconds before the measured window")
	seconds := flag.Float64("seconds", 5, "seconds measured")
	chunked := flag.Bool("chunked", false, "send the body chunked (no Content-Length)")
	flag.Parse()
	parsed, err := url.Parse(*target)
	if *target == "" || *bodyFile == "" || err != nil {
		fmt.Fprintln(os.Stderr, "gateway_load: -url (http://host:port/path) and -body are required")
		os.Exit(2)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway_load:", err)
		os.Exit(2)
	}
	raw := request(parsed, *contentType, body, *chunked)
	start := time.Now()
	measureFrom := start.Add(time.Duration(*warmup * float64(time.Second)))
	end := measureFrom.Add(time.Duration(*seconds * float64(time.Second)))

	var lock sync.Mutex
	var latencies []time.Duration
	statuses := map[string]int{}
	failures := 0
	firstError := ""
	var cpuAtStart float64
	var cpuOnce sync.Once
	var workers sync.WaitGroup
	for i := 0; i < *connections; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var mine []time.Duration
			myStatuses := map[string]int{}
			myFailures, myFirst := 0, ""
			var conn net.Conn
			var reader *bufio.Reader
			for {
				sent := time.Now()
				if !sent.Before(end) {
					break
				}
				if !sent.Before(measureFrom) {
					cpuOnce.Do(func() { cpuAtStart = cpuSeconds() })
				}
				var status int
				var err error
				if conn == nil {
					conn, err = net.Dial("tcp", parsed.Host)
					if err == nil {
						reader = bufio.NewReaderSize(conn, 65536)
					}
				}
				if err == nil {
					status, err = exchange(conn, reader, raw, *chunked)
				}
				if err != nil && conn != nil {
					conn.Close() // a new connection for the next request
					conn = nil
				}
				done := time.Now()
				// Counted when sent inside the window and answered before its end.
				if sent.Before(measureFrom) || done.After(end) {
					continue
				}
				if err != nil {
					myFailures++
					if myFirst == "" {
						myFirst = err.Error()
					}
					continue
				}
				myStatuses[strconv.Itoa(status)]++
				mine = append(mine, done.Sub(sent))
			}
			if conn != nil {
				conn.Close()
			}
			lock.Lock()
			latencies = append(latencies, mine...)
			for status, count := range myStatuses {
				statuses[status] += count
			}
			failures += myFailures
			if firstError == "" {
				firstError = myFirst
			}
			lock.Unlock()
		}()
	}
	workers.Wait()
	cpuUsed := cpuSeconds() - cpuAtStart
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	out := result{
		Requests:   len(latencies),
		Statuses:   statuses,
		Errors:     failures,
		FirstError: firstError,
		Seconds:    *seconds,
		CPUSeconds: cpuUsed,
	}
	if len(latencies) > 0 {
		out.P50Ms = float64(latencies[len(latencies)/2]) / 1e6
		out.P99Ms = float64(latencies[len(latencies)*99/100]) / 1e6
	}
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}
