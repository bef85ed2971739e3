// Request counters and a sliding window of latencies for GetModelStatus.
#ifndef TFAD_CC_LATENCY_STATS_H_
#define TFAD_CC_LATENCY_STATS_H_

#include <cstdint>
#include <mutex>
#include <vector>

namespace tfad {

struct StatsSnapshot {
  uint64_t requests_total = 0, accepted = 0, rejected = 0, rejected_incomplete = 0, invalid = 0;
  double latency_p50_ms = 0, latency_p99_ms = 0, latency_max_ms = 0, inference_mean_ms = 0;
};

class ModelStatsRecorder {
 public:
  explicit ModelStatsRecorder(size_t window = 1024) : window_(window) {}

  enum class Outcome { kAccept, kReject, kIncomplete, kInvalid };
  // Records one request; latencies are only kept for requests that produced a verdict.
  void Record(Outcome outcome, double total_ms, double inference_ms);
  StatsSnapshot Snapshot() const;

 private:
  const size_t window_;
  mutable std::mutex mu_;
  StatsSnapshot counts_;
  std::vector<double> total_ms_, inference_ms_;  // ring buffers
  size_t next_ = 0;
};

// Nearest-rank percentile (q in [0, 100]) of an unsorted sample; 0 for an empty one.
double Percentile(std::vector<double> values, double q);

}  // namespace tfad

#endif  // TFAD_CC_LATENCY_STATS_H_
