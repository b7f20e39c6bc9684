#pragma once

// A fair queue of work items keyed by tenant (account/function): pop() serves keys round-robin
// so one hot function cannot starve the others. Not thread-safe (the Engine guards it). Plain C++.

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace parley::functions::engine {

template <class T>
class FairQueue {
 public:
  // Adds `item` under `key`. False (item not added) when the key already holds
  // `max_per_key` items or the queue holds `max_total`.
  bool push(const std::string& key, T item, std::size_t max_per_key, std::size_t max_total) {
    if (size_ >= max_total) return false;
    auto& q = per_key_[key];
    if (q.size() >= max_per_key) return false;
    if (q.empty()) ring_.push_back(key);
    q.push_back(std::move(item));
    ++size_;
    return true;
  }
  // The oldest item of the next key in round-robin order.
  std::optional<T> pop() {
    if (ring_.empty()) return std::nullopt;
    std::string key = std::move(ring_.front());
    ring_.pop_front();
    auto it = per_key_.find(key);
    T item = std::move(it->second.front());
    it->second.pop_front();
    --size_;
    if (it->second.empty()) {
      per_key_.erase(it);
    } else {
      ring_.push_back(std::move(key));
    }
    return item;
  }
  // The item pop() would return, or null when empty. Valid until the next change.
  T* peek() {
    if (ring_.empty()) return nullptr;
    return &per_key_.find(ring_.front())->second.front();
  }
  // Puts the key peek() shows at the end of the serving order (its items stay queued).
  void rotate() {
    if (ring_.size() < 2) return;
    ring_.push_back(std::move(ring_.front()));
    ring_.pop_front();
  }
  // Adds `item` ahead of the other items of `key`, without limits.
  void pushFront(const std::string& key, T item) {
    auto& q = per_key_[key];
    if (q.empty()) ring_.push_back(key);
    q.push_front(std::move(item));
    ++size_;
  }
  // Number of distinct keys with items.
  std::size_t keys() const { return ring_.size(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::unordered_map<std::string, std::deque<T>> per_key_;
  std::deque<std::string> ring_;  // keys with items, in serving order
  std::size_t size_ = 0;
};

}  // namespace parley::functions::engine
