// edgevlm-prompt-dump: the prompt the native runtime builds for an artifact folder, as JSON, so
// tests can hold it against edgevlm.preprocess (Python).
//   edgevlm-prompt-dump --artifacts DIR --question TEXT [--grid COLSxROWS|none]...
// One --grid per image (none: an unsliced image). Prints {"prompt", "ids", "bounds"}.
#include <iostream>

#include "edgevlm/prompt.h"
#include "edgevlm/tokenizer.h"
#include "../src/json_write.h"

using namespace edgevlm;

int main(int argc, char** argv) {
    try {
        std::string dir, question;
        std::vector<std::optional<Size>> grids;
        for (int i = 1; i + 1 < argc; i += 2) {
            const std::string flag = argv[i], value = argv[i + 1];
            if (flag == "--artifacts") dir = value;
            else if (flag == "--question") question = value;
            else if (flag == "--grid") {
                const size_t x = value.find('x');
                grids.push_back(value == "none" ? std::nullopt
                                                : std::optional<Size>(Size{std::stoi(value.substr(0, x)),
                                                                           std::stoi(value.substr(x + 1))}));
            } else throw std::invalid_argument("unknown option " + flag);
        }
        const Manifest m = Manifest::load(dir);
        if (!m.assembly) throw ManifestError("the manifest has no prompt.assembly");
        const Tokenizer tokenizer = Tokenizer::load(dir + "/tokenizer/tokenizer.json");
        const std::string prompt = build_prompt(*m.assembly, m.query_num, grids, question);
        std::vector<int64_t> ids;
        for (int32_t id : tokenizer.encode(prompt)) ids.push_back(id);
        size_t slices = 0;
        for (const auto& grid : grids) slices += 1 + (grid && m.assembly->slice_mode ? grid->width * grid->height : 0);
        json::Writer w;
        w.begin_object().field("prompt", prompt).key("ids").integers(ids).key("bounds");
        std::vector<int64_t> flat;
        for (const auto& [start, end] : image_bounds(ids, bound_tokens(m), m.query_num, slices))
            flat.push_back(start), flat.push_back(end);
        w.integers(flat).end_object();
        std::cout << w.str() << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
