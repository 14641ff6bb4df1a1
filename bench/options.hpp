#pragma once

// Command-line parsing shared by the benchmark drivers.

#include <algorithm>
#include <iostream>
#include <optional>
#include <vector>

#include <boost/program_options.hpp>

namespace prov::bench {

// Parses argv against `options` (which gets a --help). Returns the exit code
// to stop with (0 after --help, 1 after an error), or nullopt to go on.
inline std::optional<int> parseOptions(int argc, char** argv, boost::program_options::options_description& options,
                                       boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  options.add_options()("help", "print this help");
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  return std::nullopt;
}

// The middle value (the upper middle for an even count). Precondition: not empty.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The value at fraction `p` (0.99: p99) of the sorted values; 0 for none.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace prov::bench
