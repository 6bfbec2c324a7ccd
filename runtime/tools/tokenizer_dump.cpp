// Test tool for the native tokenizer (tests/test_runtime_tokenizer.py drives it):
//   encode TOKENIZER.json TEXT OUT [--nul] [--no-special]
//       one line of space-separated ids per record of TEXT (records end in '\n', or '\0' with --nul)
//   decode TOKENIZER.json IDS OUT [--skip-special] [--stream]
//       per line of ids a record "<pieces>\n" then each piece as "<bytes> <text>\n" (the text may
//       hold any byte): one piece, or with --stream what each StreamDecoder::push and finish gave
//   id TOKENIZER.json TOKEN...   prints each token's id, or -1
// Exit status: 0 done, 1 refused input (message on stderr), 2 usage.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "edgevlm/tokenizer.h"

namespace {

std::string read_file(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw edgevlm::TokenizerError("cannot open " + path);
    std::stringstream buffer;
    buffer << file.rdbuf();
    return buffer.str();
}

std::vector<std::string> records(const std::string& data, char end) {
    std::vector<std::string> out;
    size_t from = 0;
    for (size_t at; (at = data.find(end, from)) != std::string::npos; from = at + 1)
        out.push_back(data.substr(from, at - from));
    if (from < data.size()) out.push_back(data.substr(from));
    return out;
}

bool has(const std::vector<std::string>& args, const char* flag) {
    for (const std::string& a : args)
        if (a == flag) return true;
    return false;
}

void encode(const edgevlm::Tokenizer& tok, const std::vector<std::string>& args) {
    std::ofstream out(args[2], std::ios::binary);
    bool allow_special = !has(args, "--no-special");
    std::vector<std::string> texts = records(read_file(args[1]), has(args, "--nul") ? '\0' : '\n');
    for (size_t n = 0; n < texts.size(); ++n) {
        std::vector<int32_t> ids;
        try {
            ids = tok.encode(texts[n], allow_special);
        } catch (const edgevlm::TokenizerError& e) {
            throw edgevlm::TokenizerError("record " + std::to_string(n + 1) + " of " + args[1] + ": " + e.what());
        }
        for (size_t k = 0; k < ids.size(); ++k) out << (k ? " " : "") << ids[k];
        out << '\n';
    }
    if (!out) throw edgevlm::TokenizerError("cannot write " + args[2]);
}

void decode(const edgevlm::Tokenizer& tok, const std::vector<std::string>& args) {
    std::ofstream out(args[2], std::ios::binary);
    bool skip = has(args, "--skip-special"), stream = has(args, "--stream");
    for (const std::string& line : records(read_file(args[1]), '\n')) {
        std::vector<int32_t> ids;
        std::istringstream fields(line);
        for (std::string field; fields >> field;) {
            try {
                ids.push_back(static_cast<int32_t>(std::stol(field)));
            } catch (const std::exception&) {
                throw edgevlm::TokenizerError("not a token id: " + field);
            }
        }
        std::vector<std::string> pieces;
        if (stream) {
            edgevlm::StreamDecoder decoder(tok, skip);
            for (int32_t id : ids) pieces.push_back(decoder.push(id));
            pieces.push_back(decoder.finish());
        } else {
            pieces.push_back(tok.decode(ids, skip));
        }
        out << pieces.size() << '\n';
        for (const std::string& piece : pieces) out << piece.size() << ' ' << piece << '\n';
    }
    if (!out) throw edgevlm::TokenizerError("cannot write " + args[2]);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() < 2 || (args[0] != "id" && args.size() < 4) ||
        (args[0] != "encode" && args[0] != "decode" && args[0] != "id")) {
        std::cerr << "usage: edgevlm-tokenizer-dump encode|decode TOKENIZER.json IN OUT [flags]\n"
                     "       edgevlm-tokenizer-dump id TOKENIZER.json TOKEN...\n";
        return 2;
    }
    try {
        edgevlm::Tokenizer tok = edgevlm::Tokenizer::load(args[1]);
        std::vector<std::string> rest(args.begin() + 1, args.end());
        if (args[0] == "encode") encode(tok, rest);
        else if (args[0] == "decode") decode(tok, rest);
        else
            for (size_t k = 2; k < args.size(); ++k) std::cout << tok.token_to_id(args[k]).value_or(-1) << '\n';
    } catch (const edgevlm::TokenizerError& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    } catch (const std::exception& e) {  // e.g. out of memory: still a message, not a crash
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
