#include "client/loadtest/chart.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace attention::loadtest {
namespace {

constexpr int kWidth = 960, kHeight = 360;
constexpr int kLeft = 72, kRight = 170, kTop = 36, kBottom = 48;
constexpr const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2",
                                   "#59a14f", "#edc948", "#b07aa1", "#ff9da7"};

// Digits after the point that make multiples of `step` exact enough to read.
int Decimals(double step) {
  return std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
}

}  // namespace

std::vector<Tick> RoundTicks(double max, int target) {
  if (!(max > 0)) return {{0, "0"}, {1, "1"}};
  const double raw = max / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * magnitude;
  for (double m : {1.0, 2.0, 5.0}) {
    if (raw <= m * magnitude * (1 + 1e-9)) {
      step = m * magnitude;
      break;
    }
  }
  const int n = static_cast<int>(std::ceil(max / step - 1e-9));
  const int decimals = Decimals(step);
  std::vector<Tick> ticks;
  for (int i = 0; i <= n; ++i) {
    const double v = step * i;
    ticks.push_back({v, absl::StrFormat("%.*f", decimals, v)});
  }
  return ticks;
}

double PercentileX(double p) { return std::log10(1.0 / (1.0 - p / 100.0)); }

double PercentileAxisEnd(int64_t count) {
  return std::clamp(std::log10(static_cast<double>(std::max<int64_t>(count, 1))), 1.0, 6.0);
}

std::vector<Tick> PercentileTicks(double x_end) {
  std::vector<Tick> ticks = {{0, "0%"}, {PercentileX(50), "50%"}};
  for (int nines = 1; nines <= x_end + 1e-9; ++nines) {
    const double p = 100.0 * (1.0 - std::pow(10.0, -nines));
    ticks.push_back(
        {static_cast<double>(nines), absl::StrFormat("%.*f%%", std::max(0, nines - 2), p)});
  }
  return ticks;
}

std::vector<SecondStats> FullSeconds(const std::vector<SecondStats>& series, double duration_s) {
  std::vector<SecondStats> out;
  for (const SecondStats& s : series) {
    if (s.t + 1 <= duration_s + 1e-9) out.push_back(s);
  }
  return out;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out.push_back(c);
  }
  return out;
}

std::string LineChartSvg(const ChartSpec& spec, const std::vector<Series>& series) {
  double xmax = 0, ymax = 0;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      xmax = std::max(xmax, x);
      ymax = std::max(ymax, y);
    }
  }
  const std::vector<Tick> xticks =
      spec.percentile_x ? PercentileTicks(spec.x_end) : RoundTicks(xmax, 8);
  const std::vector<Tick> yticks = RoundTicks(ymax, 5);
  const double x_end = spec.percentile_x ? spec.x_end : xticks.back().at;
  const double y_end = yticks.back().at;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + pw * x / x_end; };
  auto py = [&](double y) { return kTop + ph * (1 - y / y_end); };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"%s\" data-chart=\"%s\" "
      "viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" aria-label=\"%s\" "
      "font-family=\"sans-serif\" font-size=\"12\">"
      "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>"
      "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">%s</text>",
      spec.id, spec.id, kWidth, kHeight, HtmlEscape(spec.title), kWidth, kHeight, kLeft,
      HtmlEscape(spec.title));
  for (const Tick& t : yticks) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                          "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
                          kLeft, py(t.at), kLeft + pw, py(t.at), kLeft - 6, py(t.at) + 4, t.label);
  }
  for (const Tick& t : xticks) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
                          px(t.at), kTop, px(t.at), kTop + ph, px(t.at), kTop + ph + 16, t.label);
  }
  absl::StrAppendFormat(&svg,
                        "<path d=\"M%d,%d V%.1f H%.1f\" fill=\"none\" stroke=\"black\"/>"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>"
                        "<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" "
                        "text-anchor=\"middle\">%s</text>",
                        kLeft, kTop, kTop + ph, kLeft + pw, kLeft + pw / 2, kHeight - 8,
                        HtmlEscape(spec.x_label), kTop + ph / 2, kTop + ph / 2,
                        HtmlEscape(spec.y_label));
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const char* color = kColors[i % 8];
    std::string path;
    for (const auto& [x, y] : s.points) {
      absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "M" : " L", px(x), py(y));
    }
    absl::StrAppendFormat(&svg, "<g class=\"series\" data-series=\"%s\">", HtmlEscape(s.name));
    if (!path.empty()) {
      absl::StrAppendFormat(&svg,
                            "<path class=\"line\" d=\"%s\" fill=\"none\" stroke=\"%s\" "
                            "stroke-width=\"2\"/>",
                            path, color);
    }
    for (size_t k = 0; spec.markers && k < s.points.size(); ++k) {
      const double x = px(s.points[k].first), y = py(s.points[k].second);
      absl::StrAppendFormat(
          &svg, "<circle class=\"marker\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x, y,
          color);
      if (k < s.point_labels.size()) {
        absl::StrAppendFormat(
            &svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">%s</text>", x + 6,
            y - 6, color, HtmlEscape(s.point_labels[k]));
      }
    }
    const int ly = kTop + 8 + static_cast<int>(i) * 18;
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%.1f\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%d\">%s</text></g>",
                          kLeft + pw + 14, ly - 10, color, kLeft + pw + 32, ly, HtmlEscape(s.name));
  }
  return svg + "</svg>";
}

}  // namespace attention::loadtest
