// The part of Foundation that runtime/src/vision_coreml.mm uses, declared as Apple documents it, so
// that clang on Linux can type-check that file (tests/test_runtime_platforms.py). Not the SDK: a
// call that compiles here can still differ from the real headers in details (nullability, generics).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef long NSInteger;
typedef unsigned long NSUInteger;
typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
#define NS_NOESCAPE __attribute__((noescape))
#define nil nullptr  // as <objc/objc.h> defines it for C++

typedef struct {
    unsigned long state;
    __unsafe_unretained id* itemsPtr;
    unsigned long* mutationsPtr;
    unsigned long extra[5];
} NSFastEnumerationState;

@protocol NSFastEnumeration
- (NSUInteger)countByEnumeratingWithState:(NSFastEnumerationState*)state
                                  objects:(__unsafe_unretained id[])buffer
                                    count:(NSUInteger)len;
@end

__attribute__((objc_root_class))
@interface NSObject
+ (instancetype)alloc;
- (instancetype)init;
@end

@interface NSString : NSObject
+ (instancetype)stringWithUTF8String:(const char*)text;
+ (instancetype)stringWithFormat:(NSString*)format, ...;
@property(readonly) const char* UTF8String;
@property(readonly, copy) NSString* lastPathComponent;
@property(readonly, copy) NSString* stringByDeletingPathExtension;
- (NSInteger)compare:(NSString*)other;
@end

@interface NSConstantString : NSString
@end

@interface NSNumber : NSObject
+ (NSNumber*)numberWithLongLong:(long long)value;
+ (NSNumber*)numberWithLong:(long)value;
+ (NSNumber*)numberWithInt:(int)value;
+ (NSNumber*)numberWithUnsignedLong:(unsigned long)value;
@property(readonly) long long longLongValue;
@end

@interface NSError : NSObject
@property(readonly, copy) NSString* localizedDescription;
@end

@interface NSArray<__covariant ObjectType> : NSObject <NSFastEnumeration>
@property(readonly) NSUInteger count;
- (ObjectType)objectAtIndexedSubscript:(NSUInteger)index;
@end

@interface NSMutableArray<ObjectType> : NSArray<ObjectType>
+ (instancetype)array;
- (void)addObject:(ObjectType)object;
- (void)insertObject:(ObjectType)object atIndex:(NSUInteger)index;
- (void)sortUsingSelector:(SEL)comparator;
@end

@interface NSDictionary<__covariant KeyType, __covariant ObjectType> : NSObject <NSFastEnumeration>
@property(readonly) NSUInteger count;
- (ObjectType)objectForKeyedSubscript:(KeyType)key;
@end

@interface NSMutableDictionary<KeyType, ObjectType> : NSDictionary<KeyType, ObjectType>
+ (instancetype)dictionary;
- (void)setObject:(ObjectType)object forKeyedSubscript:(KeyType)key;
@end

@interface NSURL : NSObject
+ (NSURL*)fileURLWithPath:(NSString*)path;
@property(readonly, copy) NSString* path;
@property(readonly, copy) NSString* lastPathComponent;
@property(readonly) const char* fileSystemRepresentation;
- (NSURL*)URLByAppendingPathComponent:(NSString*)component;
- (NSURL*)URLByAppendingPathComponent:(NSString*)component isDirectory:(BOOL)isDirectory;
@end

@interface NSDirectoryEnumerator<ObjectType> : NSObject <NSFastEnumeration>
@end

typedef enum { NSCachesDirectory = 13 } NSSearchPathDirectory;
typedef enum { NSUserDomainMask = 1 } NSSearchPathDomainMask;

@interface NSFileManager : NSObject
@property(class, readonly, strong) NSFileManager* defaultManager;
- (BOOL)fileExistsAtPath:(NSString*)path;
- (BOOL)fileExistsAtPath:(NSString*)path isDirectory:(BOOL*)isDirectory;
- (NSURL*)URLForDirectory:(NSSearchPathDirectory)directory inDomain:(NSSearchPathDomainMask)domain
        appropriateForURL:(NSURL*)url create:(BOOL)create error:(NSError**)error;
- (BOOL)createDirectoryAtURL:(NSURL*)url withIntermediateDirectories:(BOOL)intermediates
                  attributes:(NSDictionary*)attributes error:(NSError**)error;
- (BOOL)removeItemAtURL:(NSURL*)url error:(NSError**)error;
- (BOOL)moveItemAtURL:(NSURL*)source toURL:(NSURL*)destination error:(NSError**)error;
- (NSDirectoryEnumerator<NSString*>*)enumeratorAtPath:(NSString*)path;
@end
