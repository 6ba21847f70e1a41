// Command golockheed runs the operations of Go lockheed v0.5.3
// (github.com/goblain/lockheed) for lockheed's interoperability tests
// (tests/test_go_interop.py). It is a thin shell: every lock decision is Go
// lockheed's own. Each step is reported on stdout as one JSON line that
// starts with {"event":"<name>"; the rest of the object is sorted by key.
//
//	golockheed acquire --kubeconfig K --namespace N --name L [--duration 30s]
//	    [--renew-interval 0] [--tags a,b] [--reset-tags] [--force-tag X]
//	    [--instance-id ID] [--retry-for SECONDS] [--hold SECONDS | --wait-stdin]
//	golockheed release --kubeconfig K --namespace N --name L --instance-id ID
//	    [--tags a,b] [--reset-tags]
//	golockheed list --kubeconfig K --namespace N [--tag X] [--acquired true|false]
//	golockheed contend --kubeconfig K --namespace N --name L --iterations N
//	    --log FILE --counter FILE --start-fd FD [--duration 10s]
//	    [--backoff-min 20ms] [--backoff-max 120ms] [--hold-max 0]
//	golockheed serve --kubeconfig K --namespace N
//	golockheed bench-contend --kubeconfig K --namespace N --name L [--duration 30s]
//	    [--backoff-min 20ms] [--backoff-max 120ms] [--start-timeout 180s]
//
// acquire takes the lock once (Go's Acquire does not wait; --retry-for retries
// it with a short randomised backoff), then, with --hold, keeps it that many
// seconds (renewed by Go lockheed's own loop when --renew-interval is set) and
// releases it; with --wait-stdin it releases when stdin has a line or ends;
// with neither it exits holding the lease. Go lockheed's event log (its
// DefaultEventHandler writes to the standard logger) is reported as "go_log"
// events, so a test sees, for example, a renewal that failed.
//
// contend is the Go side of the mixed contention test: see runContend.
// serve runs the benchmark's Go lockheed operations on commands read from
// stdin (python -m bench): see runServe. bench-contend is one contender of
// the benchmark's contention figure: see runBenchContend.
//
// Exit status: 0 done, 1 an operation failed, 2 usage error, 3 not acquired.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // so that a test can run this program under any TZ

	"github.com/goblain/lockheed"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitNotAcquired = 3
)

var stdoutMu sync.Mutex

// emit prints one JSON line: {"event":event, ...fields sorted by key}.
func emit(event string, fields map[string]interface{}) {
	name, _ := json.Marshal(event)
	line := `{"event":` + string(name)
	if len(fields) > 0 {
		rest, err := json.Marshal(fields)
		if err != nil {
			rest = []byte(fmt.Sprintf(`{"marshal_error":%q}`, err.Error()))
		}
		line += "," + string(rest[1:])
	} else {
		line += "}"
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	_, _ = os.Stdout.WriteString(line + "\n")
}

// goLog turns each line of Go lockheed's log into a "go_log" event.
type goLog struct{}

func (goLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		emit("go_log", map[string]interface{}{"message": line})
	}
	return len(p), nil
}

// monotonicNs reads CLOCK_MONOTONIC, the clock behind Python's
// time.monotonic_ns() on Linux. Go's time.Now() carries a monotonic reading
// too, but only as an offset private to this process, so it cannot be
// compared with another process's stamps; CLOCK_MONOTONIC is one system-wide
// clock that, unlike CLOCK_REALTIME, is never stepped by NTP or an operator.
func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

type common struct {
	kubeconfig string
	namespace  string
	name       string
}

func (c *common) register(fs *flag.FlagSet, needName bool) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (required)")
	fs.StringVar(&c.namespace, "namespace", "", "namespace of the locks (required)")
	if needName {
		fs.StringVar(&c.name, "name", "", "lock name (required)")
	}
}

func (c *common) check(needName bool) error {
	if c.kubeconfig == "" || c.namespace == "" || (needName && c.name == "") {
		return errors.New("--kubeconfig, --namespace and --name are required")
	}
	return nil
}

func (c *common) clientset() (*kubernetes.Clientset, error) {
	// client-go's default client-side limit (5 requests/s) would throttle a
	// contender to about one acquire attempt per second; the tests want the
	// interleavings that a faster client produces.
	return c.clientsetQPS(100, 200)
}

// clientsetQPS is a clientset with client-go's client-side rate limit set to
// qps and burst; a negative qps switches the limit off.
func (c *common) clientsetQPS(qps float32, burst int) (*kubernetes.Clientset, error) {
	config, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return nil, err
	}
	config.QPS = qps
	config.Burst = burst
	return kubernetes.NewForConfig(config)
}

func (c *common) locker() (*lockheed.KubeLocker, error) {
	cset, err := c.clientset()
	if err != nil {
		return nil, err
	}
	return lockheed.NewKubeLocker(cset, c.namespace), nil
}

func splitTags(tags string) []string {
	if tags == "" {
		return nil
	}
	return strings.Split(tags, ",")
}

type lockFlags struct {
	common
	duration      time.Duration
	renewInterval time.Duration
	tags          string
	resetTags     bool
	forceTag      string
	instanceID    string
}

func (f *lockFlags) register(fs *flag.FlagSet) {
	f.common.register(fs, true)
	fs.DurationVar(&f.duration, "duration", 30*time.Second, "lease duration; 0 never expires")
	fs.DurationVar(&f.renewInterval, "renew-interval", 0, "renewal interval; 0 no renewal")
	fs.StringVar(&f.tags, "tags", "", "comma-separated tags")
	fs.BoolVar(&f.resetTags, "reset-tags", false, "make the lock's tags exactly --tags")
	fs.StringVar(&f.forceTag, "force-tag", "", "take over when the lock's tags contain this")
	fs.StringVar(&f.instanceID, "instance-id", "", "instance ID (default: Go lockheed's UUID)")
}

func (f *lockFlags) newLock(locker lockheed.LockerInterface) *lockheed.Lock {
	lock := lockheed.NewLock(f.name, locker).
		WithDuration(f.duration).
		WithRenewInterval(f.renewInterval)
	if f.instanceID != "" {
		lock.InstanceID = f.instanceID
	}
	if tags := splitTags(f.tags); tags != nil {
		lock.WithTags(tags)
	}
	if f.resetTags {
		lock.WithResetTags()
	}
	if f.forceTag != "" {
		lock.WithForce(lockheed.Condition{
			Operation: lockheed.OperationContains,
			Field:     lockheed.FieldTags,
			Value:     f.forceTag,
		})
	}
	return lock
}

// acquireRetrying calls Go's Acquire until it succeeds or `until` passes,
// sleeping a random backoff in [minBackoff, maxBackoff) between attempts.
// It returns the number of attempts and the last error.
func acquireRetrying(lock *lockheed.Lock, until time.Time, minBackoff, maxBackoff time.Duration) (int, error) {
	attempts := 0
	for {
		attempts++
		err := lock.Acquire()
		if err == nil || !time.Now().Before(until) {
			return attempts, err
		}
		backoff := minBackoff
		if maxBackoff > minBackoff {
			backoff += time.Duration(rand.Int63n(int64(maxBackoff - minBackoff)))
		}
		time.Sleep(backoff)
	}
}

func release(lock *lockheed.Lock) int {
	if err := lock.Release(); err != nil {
		emit("release_failed", map[string]interface{}{
			"instance_id": lock.InstanceID, "error": err.Error(), "mono_ns": monotonicNs(),
		})
		return exitFailed
	}
	emit("released", map[string]interface{}{"instance_id": lock.InstanceID, "mono_ns": monotonicNs()})
	return exitOK
}

func runAcquire(args []string) int {
	fs := flag.NewFlagSet("acquire", flag.ContinueOnError)
	var f lockFlags
	f.register(fs)
	hold := fs.Float64("hold", -1, "hold this many seconds, then release")
	waitStdin := fs.Bool("wait-stdin", false, "hold until stdin has a line or ends, then release")
	retryFor := fs.Float64("retry-for", 0, "retry a failed acquire for this many seconds")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := f.check(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	locker, err := f.locker()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	lock := f.newLock(locker)
	until := time.Now().Add(time.Duration(*retryFor * float64(time.Second)))
	attempts, err := acquireRetrying(lock, until, 50*time.Millisecond, 150*time.Millisecond)
	if err != nil {
		emit("acquire_failed", map[string]interface{}{
			"instance_id": lock.InstanceID, "error": err.Error(), "attempts": attempts,
		})
		return exitNotAcquired
	}
	emit("acquired", map[string]interface{}{
		"instance_id": lock.InstanceID, "name": lock.Name, "attempts": attempts,
		"mono_ns": monotonicNs(),
	})
	switch {
	case *hold >= 0:
		time.Sleep(time.Duration(*hold * float64(time.Second)))
	case *waitStdin:
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	default:
		return exitOK
	}
	return release(lock)
}

func runRelease(args []string) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	var f lockFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := f.check(true); err != nil || f.instanceID == "" {
		fmt.Fprintln(os.Stderr, "--kubeconfig, --namespace, --name and --instance-id are required")
		return exitUsage
	}
	locker, err := f.locker()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	return release(f.newLock(locker))
}

func runList(args []string) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	var c common
	c.register(fs, false)
	tag := fs.String("tag", "", "only locks whose tags contain this")
	acquired := fs.String("acquired", "", "only locks that are (true) or are not (false) held")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := c.check(false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	var conditions []lockheed.Condition
	if *tag != "" {
		conditions = append(conditions, lockheed.Condition{
			Operation: lockheed.OperationContains, Field: lockheed.FieldTags, Value: *tag,
		})
	}
	if *acquired != "" {
		value, err := strconv.ParseBool(*acquired)
		if err != nil {
			fmt.Fprintln(os.Stderr, "--acquired takes true or false")
			return exitUsage
		}
		conditions = append(conditions, lockheed.Condition{
			Operation: lockheed.OperationEquals, Field: lockheed.FieldAcquired, Value: value,
		})
	}
	var where *lockheed.Condition
	switch len(conditions) {
	case 0:
	case 1:
		where = &conditions[0]
	default:
		where = &lockheed.Condition{Operation: lockheed.OperationAnd, Conditions: &conditions}
	}
	locker, err := c.locker()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	locks, err := lockheed.GetLocks(locker, where)
	if err != nil {
		emit("list_failed", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	held := lockheed.Condition{
		Operation: lockheed.OperationEquals, Field: lockheed.FieldAcquired, Value: true,
	}
	out := []map[string]interface{}{}
	for _, lock := range locks {
		// The lock as Go lockheed marshals it, plus Go's view of whether it is held.
		text, err := json.Marshal(lock)
		if err != nil {
			emit("list_failed", map[string]interface{}{"error": err.Error()})
			return exitFailed
		}
		entry := map[string]interface{}{}
		if err := json.Unmarshal(text, &entry); err != nil {
			emit("list_failed", map[string]interface{}{"error": err.Error()})
			return exitFailed
		}
		isHeld, err := lock.Evaluate(&held)
		if err != nil {
			emit("list_failed", map[string]interface{}{"error": err.Error()})
			return exitFailed
		}
		entry["acquired"] = isHeld
		out = append(out, entry)
	}
	emit("listed", map[string]interface{}{"locks": out})
	return exitOK
}

// runContend is the Go side of the mixed contention test. It prints "ready",
// waits for one byte on --start-fd, then acquires the lock --iterations times,
// retrying each acquire with a short random backoff (Go lockheed has no way
// to wait for a lock). Inside each hold it increments the --counter file by a
// plain read-modify-write, in the format of tests/lock_worker.py, pausing a
// random time up to --hold-max between the read and the write; after each
// release it appends "go <instance id> <start_ns> <end_ns> <pid>" to the
// shared --log with one O_APPEND write. start_ns is taken when Acquire has
// returned and end_ns before Release is called, from CLOCK_MONOTONIC.
//
// Leases are not renewed (--duration must outlast a hold): Go lockheed's renewal loop can run one last Renew after
// Release, and that Renew, finding no lease, leaves the ConfigMap reserved
// for 30 seconds, which would stall every contender.
func runContend(args []string) int {
	fs := flag.NewFlagSet("contend", flag.ContinueOnError)
	var c common
	c.register(fs, true)
	duration := fs.Duration("duration", 10*time.Second, "lease duration")
	iterations := fs.Int("iterations", 0, "acquisitions to make")
	logPath := fs.String("log", "", "shared hold log (appended)")
	counterPath := fs.String("counter", "", "shared counter file")
	startFd := fs.Int("start-fd", -1, "file descriptor that delivers the start byte")
	startTimeout := fs.Duration("start-timeout", 120*time.Second, "how long to wait for the start byte")
	acquireTimeout := fs.Duration("acquire-timeout", 200*time.Second, "give up an acquire after this long")
	minBackoff := fs.Duration("backoff-min", 20*time.Millisecond, "shortest pause between attempts")
	maxBackoff := fs.Duration("backoff-max", 120*time.Millisecond, "longest pause between attempts")
	maxHold := fs.Duration("hold-max", 0, "keep each hold a random time up to this long")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := c.check(true); err != nil || *iterations <= 0 || *logPath == "" || *counterPath == "" || *startFd < 0 {
		fmt.Fprintln(os.Stderr, "contend needs --kubeconfig --namespace --name --iterations --log --counter --start-fd")
		return exitUsage
	}
	pid := os.Getpid()
	logFile, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	defer logFile.Close()
	counter, err := os.OpenFile(*counterPath, os.O_RDWR, 0)
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	defer counter.Close()
	cset, err := c.clientset()
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	// Open the connection before the start, as the Python workers do.
	_, _ = cset.CoreV1().ConfigMaps(c.namespace).Get(
		context.Background(), "lockheed-"+c.name, metav1.GetOptions{})
	lock := lockheed.NewLock(c.name, lockheed.NewKubeLocker(cset, c.namespace)).WithDuration(*duration)

	emit("ready", map[string]interface{}{"pid": pid, "instance_id": lock.InstanceID})
	if !waitForStart(*startFd, *startTimeout) {
		emit("aborted", map[string]interface{}{"pid": pid})
		return exitUsage
	}
	attempts, releaseRetries := 0, 0
	for i := 0; i < *iterations; i++ {
		n, err := acquireRetrying(lock, time.Now().Add(*acquireTimeout), *minBackoff, *maxBackoff)
		attempts += n
		if err != nil {
			emit("acquire_failed", map[string]interface{}{"error": err.Error(), "iteration": i})
			return exitNotAcquired
		}
		start := monotonicNs()
		if err := increment(counter, randomUpTo(*maxHold)); err != nil {
			emit("error", map[string]interface{}{"error": err.Error()})
			return exitFailed
		}
		end := monotonicNs()
		// Release fails when other contenders keep the ConfigMap reserved for
		// Go's five attempts; the lease is ours until it expires, so try again.
		var releaseErr error
		for try := 0; try < 5; try++ {
			if releaseErr = lock.Release(); releaseErr == nil {
				break
			}
			releaseRetries++
		}
		line := fmt.Sprintf("go %s %d %d %d\n", lock.InstanceID, start, end, pid)
		if _, err := logFile.Write([]byte(line)); err != nil {
			emit("error", map[string]interface{}{"error": err.Error()})
			return exitFailed
		}
		if releaseErr != nil {
			emit("release_failed", map[string]interface{}{"error": releaseErr.Error(), "iteration": i})
			return exitFailed
		}
	}
	emit("done", map[string]interface{}{
		"pid": pid, "count": *iterations, "attempts": attempts, "release_retries": releaseRetries,
	})
	return exitOK
}

func randomUpTo(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int63n(int64(limit)))
}

// increment adds one to the counter file as tests/lock_worker.py does: a
// plain read-modify-write that loses increments unless holds exclude each
// other, with a pause of `pause` between the read and the write.
func increment(counter *os.File, pause time.Duration) error {
	buf := make([]byte, 32)
	n, err := counter.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	value := 0
	if text := strings.TrimSpace(string(buf[:n])); text != "" {
		if value, err = strconv.Atoi(text); err != nil {
			return err
		}
	}
	time.Sleep(pause)
	_, err = counter.WriteAt([]byte(fmt.Sprintf("%-31d\n", value+1)), 0)
	return err
}

// waitForStart blocks until one byte arrives on fd; false on end of file or timeout.
func waitForStart(fd int, timeout time.Duration) bool {
	got := make(chan bool, 1)
	go func() {
		f := os.NewFile(uintptr(fd), "start")
		buf := make([]byte, 1)
		n, _ := f.Read(buf)
		got <- n == 1
	}()
	select {
	case ok := <-got:
		return ok
	case <-time.After(timeout):
		return false
	}
}

// runBenchContend is one contender of the benchmark's contention figure
// (python -m bench, bench/_contention.py), speaking the protocol of the
// benchmark's Python workers (bench/_worker.py): it prints READY once
// connected, waits for "GO <t_end>" on stdin (t_end in seconds of
// CLOCK_MONOTONIC, the clock of Python's time.monotonic()), then takes and
// releases the lock as fast as it can until t_end: Go's Acquire, and after a
// failed one a random pause in [--backoff-min, --backoff-max) (Go lockheed
// cannot wait for a lock); a Release that fails (the ConfigMap reserved by
// another contender for Go's five tries) is tried again, up to five times.
// Then it prints RESULT and a JSON object: "stamps", [CLOCK_MONOTONIC seconds
// when an Acquire returned, this contender's ID] per acquisition, and counts
// of failed attempts and releases. Go lockheed's log is discarded (it logs
// every failed attempt); the last error is reported instead. client-go's
// client-side rate limit is off, as the Python contenders have none.
func runBenchContend(args []string) int {
	fs := flag.NewFlagSet("bench-contend", flag.ContinueOnError)
	var c common
	c.register(fs, true)
	duration := fs.Duration("duration", 30*time.Second, "lease duration")
	minBackoff := fs.Duration("backoff-min", 20*time.Millisecond, "shortest pause after a failed attempt")
	maxBackoff := fs.Duration("backoff-max", 120*time.Millisecond, "longest pause after a failed attempt")
	startTimeout := fs.Duration("start-timeout", 180*time.Second, "how long to wait for GO")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Printf("ERROR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return exitFailed
	}
	if err := c.check(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	cset, err := c.clientsetQPS(-1, 0)
	if err != nil {
		return fail(err)
	}
	// Open the connection before the start, as the Python workers do.
	_, _ = cset.CoreV1().ConfigMaps(c.namespace).Get(
		context.Background(), "lockheed-"+c.name, metav1.GetOptions{})
	lock := lockheed.NewLock(c.name, lockheed.NewKubeLocker(cset, c.namespace)).WithDuration(*duration)
	fmt.Println("READY")

	line := make(chan string, 1)
	go func() {
		text, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		line <- text
	}()
	var start string
	select {
	case start = <-line:
	case <-time.After(*startTimeout):
	}
	words := strings.Fields(start)
	if len(words) != 2 || words[0] != "GO" {
		return fail(fmt.Errorf("no start signal (got %q)", start))
	}
	tEnd, err := strconv.ParseFloat(words[1], 64)
	if err != nil {
		return fail(err)
	}
	endNs := int64(tEnd * 1e9)

	me := strconv.Itoa(os.Getpid())
	stamps := [][]interface{}{}
	failed, releaseRetries, releaseFailures := 0, 0, 0
	lastError := ""
	for monotonicNs() < endNs {
		if err := lock.Acquire(); err != nil {
			failed++
			lastError = err.Error()
			time.Sleep(*minBackoff + randomUpTo(*maxBackoff-*minBackoff))
			continue
		}
		stamps = append(stamps, []interface{}{float64(monotonicNs()) / 1e9, me})
		var releaseErr error
		for try := 0; try < 5; try++ {
			if releaseErr = lock.Release(); releaseErr == nil {
				break
			}
			releaseRetries++
		}
		if releaseErr != nil {
			releaseFailures++
			lastError = releaseErr.Error()
		}
	}
	result, err := json.Marshal(map[string]interface{}{
		"stamps":           stamps,
		"conflicts":        0,
		"failed_attempts":  failed,
		"release_retries":  releaseRetries,
		"release_failures": releaseFailures,
		"last_error":       lastError,
	})
	if err != nil {
		return fail(err)
	}
	fmt.Printf("RESULT %s\n", result)
	return exitOK
}

// runServe performs Go lockheed operations for the benchmark (python -m bench)
// on commands read from stdin, one per line, words separated by spaces, and
// answers each with one line: {"event":"ok",...} or {"event":"error","error":...}.
// It prints {"event":"ready"} first. Lock objects are named by a handle H.
//
//	lock H NAME DURATION RENEW_INTERVAL   a new lockheed.Lock (Go durations, "0" for none)
//	acquire H | renew H | release H      one Acquire, Renew or Release
//	cycle H N                            3 warm-up Acquire+Release cycles, then N timed
//	handoff HOLDER WAITER N SETTLE JITTER RETRY_DELAY
//	                                     N hand-offs, see handoffs
//
// Timed answers carry "seconds", one sample per cycle or hand-off, measured
// with Go's monotonic clock (time.Since). client-go's client-side rate limit is
// off, as the Python clients that the benchmark compares have none. Go
// lockheed's event log goes to stderr.
func runServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := c.check(false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitUsage
	}
	cset, err := c.clientsetQPS(-1, 0)
	if err != nil {
		emit("error", map[string]interface{}{"error": err.Error()})
		return exitFailed
	}
	locker := lockheed.NewKubeLocker(cset, c.namespace)
	locks := map[string]*lockheed.Lock{}
	emit("ready", map[string]interface{}{"pid": os.Getpid()})
	input := bufio.NewScanner(os.Stdin)
	for input.Scan() {
		words := strings.Fields(input.Text())
		if len(words) == 0 {
			continue
		}
		fields, err := serveOne(locker, locks, words)
		if err != nil {
			emit("error", map[string]interface{}{"error": err.Error(), "command": words[0]})
			continue
		}
		emit("ok", fields)
	}
	return exitOK
}

func serveOne(locker *lockheed.KubeLocker, locks map[string]*lockheed.Lock, words []string) (map[string]interface{}, error) {
	get := func(handle string) (*lockheed.Lock, error) {
		if lock, ok := locks[handle]; ok {
			return lock, nil
		}
		return nil, fmt.Errorf("no lock %q", handle)
	}
	want := map[string]int{"lock": 5, "acquire": 2, "renew": 2, "release": 2, "cycle": 3, "handoff": 7}
	if n, ok := want[words[0]]; !ok || len(words) != n {
		return nil, fmt.Errorf("bad command %q", strings.Join(words, " "))
	}
	switch words[0] {
	case "lock":
		duration, err := time.ParseDuration(words[3])
		if err != nil {
			return nil, err
		}
		interval, err := time.ParseDuration(words[4])
		if err != nil {
			return nil, err
		}
		lock := lockheed.NewLock(words[2], locker).WithDuration(duration).WithRenewInterval(interval)
		locks[words[1]] = lock
		return map[string]interface{}{"instance_id": lock.InstanceID}, nil
	case "cycle":
		lock, err := get(words[1])
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(words[2])
		if err != nil {
			return nil, err
		}
		samples, err := cycles(lock, n)
		return map[string]interface{}{"seconds": samples}, err
	case "handoff":
		holder, err := get(words[1])
		if err != nil {
			return nil, err
		}
		waiter, err := get(words[2])
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(words[3])
		if err != nil {
			return nil, err
		}
		var times [3]time.Duration
		for i := range times {
			if times[i], err = time.ParseDuration(words[4+i]); err != nil {
				return nil, err
			}
		}
		samples, err := handoffs(holder, waiter, n, times[0], times[1], times[2])
		return map[string]interface{}{"seconds": samples}, err
	}
	lock, err := get(words[1])
	if err != nil {
		return nil, err
	}
	switch words[0] {
	case "acquire":
		err = lock.Acquire()
	case "renew":
		err = lock.Renew()
	default:
		err = lock.Release()
	}
	return map[string]interface{}{}, err
}

// cycles times n Acquire+Release cycles of one lock, after 3 for warm-up.
func cycles(lock *lockheed.Lock, n int) ([]float64, error) {
	samples := make([]float64, 0, n)
	for i := 0; i < n+3; i++ {
		start := time.Now()
		if err := lock.Acquire(); err != nil {
			return nil, err
		}
		if err := lock.Release(); err != nil {
			return nil, err
		}
		if i >= 3 {
			samples = append(samples, time.Since(start).Seconds())
		}
	}
	return samples, nil
}

// handoffs measures n hand-offs between two lock objects of one lock, as the
// benchmark does for the Python systems. Each round the holder acquires, the
// waiter starts Go lockheed's own retrying acquire in a goroutine
// (AcquireRetry: an Acquire every retryDelay, Go lockheed having no blocking
// acquire), the holder releases after settle plus a random pause up to
// jitter, and the sample runs from the holder's Release returning to the
// waiter's AcquireRetry returning; then the waiter releases.
func handoffs(holder, waiter *lockheed.Lock, n int, settle, jitter, retryDelay time.Duration) ([]float64, error) {
	attempts := int(30*time.Second/retryDelay) + 1
	samples := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if err := holder.Acquire(); err != nil {
			return nil, fmt.Errorf("holder: %w", err)
		}
		got := make(chan error, 1)
		var acquiredAt time.Time
		go func() {
			err := waiter.AcquireRetry(attempts, retryDelay)
			acquiredAt = time.Now()
			got <- err
		}()
		time.Sleep(settle + randomUpTo(jitter))
		if err := holder.Release(); err != nil {
			<-got
			return nil, fmt.Errorf("holder release: %w", err)
		}
		released := time.Now()
		if err := <-got; err != nil {
			return nil, fmt.Errorf("waiter: %w", err)
		}
		samples = append(samples, acquiredAt.Sub(released).Seconds())
		if err := waiter.Release(); err != nil {
			return nil, fmt.Errorf("waiter release: %w", err)
		}
	}
	return samples, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: golockheed acquire|release|list|contend|serve|bench-contend [flags]")
		os.Exit(exitUsage)
	}
	log.SetFlags(0)
	log.SetOutput(goLog{})
	var code int
	switch os.Args[1] {
	case "acquire":
		code = runAcquire(os.Args[2:])
	case "release":
		code = runRelease(os.Args[2:])
	case "list":
		code = runList(os.Args[2:])
	case "contend":
		// Failed attempts are logged by Go lockheed by the hundred: keep them
		// out of the event stream.
		log.SetFlags(log.LstdFlags | log.Lmicroseconds)
		log.SetOutput(os.Stderr)
		code = runContend(os.Args[2:])
	case "serve":
		log.SetFlags(log.LstdFlags | log.Lmicroseconds)
		log.SetOutput(os.Stderr)
		code = runServe(os.Args[2:])
	case "bench-contend":
		log.SetOutput(io.Discard)
		code = runBenchContend(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", os.Args[1])
		code = exitUsage
	}
	os.Exit(code)
}
