#include "cc/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tfad {

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(q / 100.0 * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(values.size()))) - 1;
  return values[index];
}

void ModelStatsRecorder::Record(Outcome outcome, double total_ms, double inference_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_.requests_total;
  switch (outcome) {
    case Outcome::kAccept: ++counts_.accepted; break;
    case Outcome::kReject: ++counts_.rejected; break;
    case Outcome::kIncomplete: ++counts_.rejected_incomplete; break;
    case Outcome::kInvalid: ++counts_.invalid; return;
  }
  if (total_ms_.size() < window_) {
    total_ms_.push_back(total_ms);
    inference_ms_.push_back(inference_ms);
  } else {
    total_ms_[next_] = total_ms;
    inference_ms_[next_] = inference_ms;
    next_ = (next_ + 1) % window_;
  }
}

StatsSnapshot ModelStatsRecorder::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  StatsSnapshot s = counts_;
  s.latency_p50_ms = Percentile(total_ms_, 50);
  s.latency_p99_ms = Percentile(total_ms_, 99);
  s.latency_max_ms = total_ms_.empty() ? 0.0 : *std::max_element(total_ms_.begin(), total_ms_.end());
  s.inference_mean_ms = inference_ms_.empty()
                            ? 0.0
                            : std::accumulate(inference_ms_.begin(), inference_ms_.end(), 0.0) / inference_ms_.size();
  return s;
}

}  // namespace tfad
