// Flags, logging format, latency statistics, thread priorities and the inference pool.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cc/inference_pool.h"
#include "cc/latency_stats.h"
#include "cc/server_flags.h"
#include "cc/structured_log.h"
#include "cc/thread_priority.h"

namespace tfad {
namespace {

TEST(ServerFlagsTest, ParsesValuesAndRejectsUnknownOrBad) {
  ServerFlags f;
  bool help = false;
  const char* argv[] = {"tfad_server", "--listen=0.0.0.0:9000", "--cycle_budget_ms=300", "--models=a,b",
                        "--log-format", "json"};
  ASSERT_TRUE(ParseServerFlags(6, argv, &f, &help).ok());
  EXPECT_EQ(f.listen, "0.0.0.0:9000");
  EXPECT_EQ(f.cycle_budget_ms, 300);
  EXPECT_EQ(f.models, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.log_format, "json");

  const char* unknown[] = {"tfad_server", "--nope=1"};
  EXPECT_NE(ParseServerFlags(2, unknown, &f, &help).message().find("unknown flag --nope"), std::string::npos);
  const char* bad[] = {"tfad_server", "--cycle_budget_ms=fast"};
  EXPECT_NE(ParseServerFlags(2, bad, &f, &help).message().find("not an integer"), std::string::npos);
  const char* range[] = {"tfad_server", "--inference_threads=0"};
  EXPECT_FALSE(ParseServerFlags(2, range, &f, &help).ok());
  ServerFlags tls;
  const char* half_tls[] = {"tfad_server", "--tls_cert=a.pem"};
  EXPECT_FALSE(ParseServerFlags(2, half_tls, &tls, &help).ok());
}

// Two inference threads on one inter-op thread queue behind each other: refused, whether the one thread was
// asked for or is TensorFlow's default on a one-CPU process.
TEST(ServerFlagsTest, InterOpPoolMustHoldEveryInferenceThread) {
  bool help = false;
  auto parsed = [&](std::vector<const char*> args) {
    args.insert(args.begin(), "tfad_server");
    ServerFlags f;
    EXPECT_TRUE(ParseServerFlags(static_cast<int>(args.size()), args.data(), &f, &help).ok());
    return f;
  };
  const ServerFlags one_pool_thread = parsed({"--inference_threads=2", "--tf_inter_op_threads=1"});
  EXPECT_NE(CheckInterOpPool(one_pool_thread, 8).message().find("--tf_inter_op_threads=1 is fewer"),
            std::string::npos);
  EXPECT_TRUE(CheckInterOpPool(parsed({"--inference_threads=2", "--tf_inter_op_threads=2"}), 1).ok());
  const ServerFlags default_pool = parsed({"--inference_threads=2", "--tf_intra_op_threads=1"});
  EXPECT_TRUE(CheckInterOpPool(default_pool, 2).ok());
  const Status one_cpu = CheckInterOpPool(default_pool, 1);
  EXPECT_NE(one_cpu.message().find("--inference_threads=2 is more than the 1 inter-op threads"), std::string::npos)
      << one_cpu.message();
  EXPECT_NE(one_cpu.message().find("give --tf_inter_op_threads=2"), std::string::npos);
  EXPECT_TRUE(CheckInterOpPool(parsed({}), 1).ok());  // the defaults run on any PC
  EXPECT_GE(TensorFlowDefaultInterOpThreads(), 1);
}

// TensorFlow's default pool: $TF_NUM_INTEROP_THREADS when it is a whole positive number, else one per CPU.
TEST(ServerFlagsTest, DefaultInterOpPoolReadsTheEnvironmentAsTensorFlowDoes) {
  unsetenv("TF_NUM_INTEROP_THREADS");
  const int per_cpu = TensorFlowDefaultInterOpThreads();
  EXPECT_GE(per_cpu, 1);
  setenv("TF_NUM_INTEROP_THREADS", "5", 1);
  EXPECT_EQ(TensorFlowDefaultInterOpThreads(), 5);
  for (const char* ignored : {"0", "-3", "4abc", "", "x"}) {
    setenv("TF_NUM_INTEROP_THREADS", ignored, 1);
    EXPECT_EQ(TensorFlowDefaultInterOpThreads(), per_cpu) << "TF_NUM_INTEROP_THREADS=" << ignored;
  }
  unsetenv("TF_NUM_INTEROP_THREADS");
}

TEST(ServerFlagsTest, HelpDocumentsEveryFlag) {
  const std::string help = ServerFlagsHelp();
  for (const char* flag : {"--listen", "--models_root", "--models", "--tf_backend", "--poll_interval_ms",
                           "--cycle_budget_ms", "--reply_margin_ms", "--inference_threads", "--max_queue",
                           "--tf_intra_op_threads", "--tf_inter_op_threads", "--warmup_batch", "--max_patches",
                           "--max_patch_bytes", "--max_image_pixels", "--max_message_bytes", "--max_rpc_threads",
                           "--tls_cert", "--tls_key", "--tls_client_ca", "--log_format", "--log_requests"}) {
    EXPECT_NE(help.find(std::string(flag) + " (default"), std::string::npos) << flag;
  }
}

// The default message limit is derived from the request limits (0 = derived), and the default RPC threads
// times the default message stay within 1 GiB (a modest share of a 24 GB line PC); issue 14 item 5.
TEST(ServerFlagsTest, MessageLimitDefaultsAreSizedFromTheLargestLegalProduct) {
  ServerFlags f;
  EXPECT_EQ(f.max_patches, 256);
  EXPECT_EQ(f.max_patch_bytes, 256 << 10);
  EXPECT_EQ(f.max_message_bytes, 0);  // derived at start-up
  EXPECT_EQ(f.max_rpc_threads, 8);
  const int64_t largest_product = int64_t{f.max_patches} * f.max_patch_bytes;
  const int64_t message = 66 << 20;  // DefaultMaxMessageBytes of the default limits (validation_test)
  EXPECT_GT(message, largest_product);
  EXPECT_LE(message * f.max_rpc_threads, int64_t{1} << 30);
  bool help = false;
  const char* zero[] = {"tfad_server", "--max_message_bytes=0"};
  EXPECT_TRUE(ParseServerFlags(2, zero, &f, &help).ok());
  const char* tiny[] = {"tfad_server", "--max_message_bytes=100"};
  EXPECT_NE(ParseServerFlags(2, tiny, &f, &help).message().find("0 = derived"), std::string::npos);
  const char* explicit_limit[] = {"tfad_server", "--max_message_bytes=1048576"};
  ASSERT_TRUE(ParseServerFlags(2, explicit_limit, &f, &help).ok());
  EXPECT_EQ(f.max_message_bytes, 1 << 20);
}

TEST(StructuredLogTest, KeyValueQuotesAndJsonEscapes) {
  EXPECT_EQ(FormatLogLine(LogFormat::kKeyValue, LogLevel::kInfo, "inspect", {{"a", "1"}, {"b", "x y"}, {"c", ""}}, "T"),
            "ts=T level=info event=inspect a=1 b=\"x y\" c=\"\"");
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, LogLevel::kError, "e", {{"msg", "say \"hi\"\n"}}, "T"),
            "{\"ts\":\"T\",\"level\":\"error\",\"event\":\"e\",\"msg\":\"say \\\"hi\\\"\\n\"}");
}

TEST(LatencyStatsTest, PercentilesAndCounts) {
  EXPECT_EQ(Percentile({}, 50), 0.0);
  EXPECT_EQ(Percentile({5, 1, 3, 2, 4}, 50), 3.0);
  EXPECT_EQ(Percentile({5, 1, 3, 2, 4}, 99), 5.0);
  ModelStatsRecorder r(3);
  r.Record(ModelStatsRecorder::Outcome::kAccept, 10, 5);
  r.Record(ModelStatsRecorder::Outcome::kReject, 20, 5);
  r.Record(ModelStatsRecorder::Outcome::kInvalid, 0, 0);
  r.Record(ModelStatsRecorder::Outcome::kIncomplete, 30, 5);
  r.Record(ModelStatsRecorder::Outcome::kAccept, 40, 5);  // pushes 10 out of the window of 3
  const StatsSnapshot s = r.Snapshot();
  EXPECT_EQ(s.requests_total, 5u);
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.invalid, 1u);
  EXPECT_EQ(s.latency_p50_ms, 30.0);
  EXPECT_EQ(s.latency_max_ms, 40.0);
}

// A task that throws (whatever it throws) must not take its worker thread, or the server, down with it.
TEST(InferencePoolTest, ThrowingTasksDoNotStopTheWorker) {
  InferencePool pool(1, 8);  // one thread: every task below runs on the thread the throwing ones used
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.TrySubmit([&ran] { ++ran; throw std::bad_alloc(); }));
  ASSERT_TRUE(pool.TrySubmit([&ran] { ++ran; throw std::runtime_error("task failed"); }));
  ASSERT_TRUE(pool.TrySubmit([&ran] { ++ran; throw 7; }));
  std::promise<void> done;
  ASSERT_TRUE(pool.TrySubmit([&ran, &done] { ++ran; done.set_value(); }));
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(ran.load(), 4);
  std::promise<void> again;
  ASSERT_TRUE(pool.TrySubmit([&again] { again.set_value(); }));
  EXPECT_EQ(again.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

// The mechanism behind the deadline reply under load: TensorFlow's threads (the inference pool's, the
// loader's, and every thread they create) run at a higher nice value than the threads that answer RPCs.
TEST(ThreadPriorityTest, InferenceThreadsAndTheThreadsTheyCreateRunAtTheLowerPriority) {
  const int base = CurrentThreadNice();
  if (base > 19 - 5) GTEST_SKIP() << "this test process already runs at nice " << base;
  InferencePool pool(1, 2, /*thread_nice=*/5);
  std::promise<std::pair<int, int>> seen;
  ASSERT_TRUE(pool.TrySubmit([&seen] {
    int child = 0;
    std::thread([&child] { child = CurrentThreadNice(); }).join();  // as TensorFlow's pools are created
    seen.set_value({CurrentThreadNice(), child});
  }));
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  const auto [worker, child] = future.get();
  EXPECT_EQ(worker, base + 5);
  EXPECT_EQ(child, base + 5);
  EXPECT_EQ(CurrentThreadNice(), base);  // the calling (RPC-side) thread is untouched

  int loader = 0;
  RunAtLowerPriority(3, [&loader] { loader = CurrentThreadNice(); });
  EXPECT_EQ(loader, base + 3);
  EXPECT_EQ(CurrentThreadNice(), base);
  EXPECT_FALSE(LowerCurrentThreadPriority(20).ok());
  EXPECT_FALSE(LowerCurrentThreadPriority(-1).ok());
}

}  // namespace
}  // namespace tfad
